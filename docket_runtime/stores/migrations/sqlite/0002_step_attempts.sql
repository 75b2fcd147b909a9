-- Docket schema, version 2 (SQLite).
--
-- Applied by `docketctl db migrate --url sqlite:///path.db` (or
-- open_store(url, migrate=True)) in one BEGIN IMMEDIATE transaction, after
-- version 1. Times are UTC text, as in version 1.

-- Step runs gain two statuses: 'cancelled' (the run was cancelled while in
-- flight) and 'cached' (the step did not run: a kept result was used).
-- SQLite cannot change a CHECK in place, so the table is rebuilt: a new table,
-- the rows copied, the old table dropped (with its index) and the new one
-- renamed. A view of yours that reads docket_step_runs keeps working: the
-- legacy rename leaves views alone, where the default one would refuse to
-- rename while a view names the dropped table. A trigger of yours on
-- docket_step_runs goes with the old table: create it again.
CREATE TABLE docket_step_runs_v2 (
    execution_id TEXT NOT NULL,
    step         TEXT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('claimed', 'running', 'succeeded', 'failed',
                                   'cancelled', 'cached')),
    attempts     INTEGER NOT NULL DEFAULT 0,  -- starts recorded, across resumes
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    duration_ms  REAL,
    error        TEXT,
    owner        TEXT NOT NULL,               -- host:pid:token of the process that ran it
    PRIMARY KEY (execution_id, step)
);
INSERT INTO docket_step_runs_v2
    (execution_id, step, status, attempts, started_at, finished_at, duration_ms, error, owner)
SELECT execution_id, step, status, attempts, started_at, finished_at, duration_ms, error, owner
FROM docket_step_runs;
DROP TABLE docket_step_runs;
PRAGMA legacy_alter_table = ON;
ALTER TABLE docket_step_runs_v2 RENAME TO docket_step_runs;
PRAGMA legacy_alter_table = OFF;
-- "What is stuck": runs that never reported back.
CREATE INDEX docket_step_runs_unfinished ON docket_step_runs (started_at)
    WHERE finished_at IS NULL;

-- Every attempt of every step, kept: docket_step_runs only holds the latest
-- run. Written with the step's end, in the same transaction. Deleted with the
-- step's results and run when a rerun forgets the step, so that attempt
-- numbers start again at 1.
CREATE TABLE docket_step_attempts (
    execution_id  TEXT NOT NULL,
    step          TEXT NOT NULL,
    attempt       INTEGER NOT NULL,            -- 1 for the first, counted across resumes
    status        TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'cancelled')),
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    duration_ms   REAL NOT NULL,
    error_type    TEXT,                        -- the exception's class, e.g. builtins.ValueError
    error_message TEXT,
    traceback     TEXT,
    owner         TEXT NOT NULL,               -- host:pid:token of the process that ran it
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
