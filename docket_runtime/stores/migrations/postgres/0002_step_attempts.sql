-- Docket schema, version 2 (Postgres).
--
-- Applied by `docketctl db migrate --url postgresql://...` (or open_store(url, migrate=True))
-- in one transaction, under an advisory lock, after version 1.

-- Step runs gain two statuses: 'cancelled' (the run was cancelled while in
-- flight) and 'cached' (the step did not run: a kept result was used).
-- docket_step_runs_status_check is the name Postgres gave version 1's CHECK.
ALTER TABLE docket_step_runs
    DROP CONSTRAINT docket_step_runs_status_check,
    ADD CONSTRAINT docket_step_runs_status_check
        CHECK (status IN ('claimed', 'running', 'succeeded', 'failed', 'cancelled', 'cached'));

-- Every attempt of every step, kept: docket_step_runs only holds the latest
-- run. Written with the step's end, in the same transaction. Deleted with the
-- step's results and run when a rerun forgets the step, so that attempt
-- numbers start again at 1.
CREATE TABLE docket_step_attempts (
    execution_id  text NOT NULL,
    step          text NOT NULL,
    attempt       integer NOT NULL,            -- 1 for the first, counted across resumes
    status        text NOT NULL CHECK (status IN ('succeeded', 'failed', 'cancelled')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    duration_ms   double precision NOT NULL,
    error_type    text,                        -- the exception's class, e.g. builtins.ValueError
    error_message text,
    traceback     text,
    owner         text NOT NULL,               -- host:pid:token of the process that ran it
    PRIMARY KEY (execution_id, step, attempt)
);
-- "How did step X fare lately": attempts of one step across executions.
CREATE INDEX docket_step_attempts_step ON docket_step_attempts (step, started_at);

-- GLOBAL result keys now also digest the graph's full name (or a cache
-- namespace graphs share on purpose), so that two graphs whose steps happen
-- to share a name no longer share results. No version 1 key can be computed
-- any more: those rows could never be read again, only purged, so they go now.
-- WORKFLOW checkpoints keep their keys and stay.
DELETE FROM docket_results WHERE scope = 'global';
