-- Docket schema, version 1 (Postgres).
--
-- Applied by `docketctl db migrate --url postgresql://...` (or open_store(url, migrate=True))
-- in one transaction, under an advisory lock, into the first schema of the
-- search_path. To keep Docket's tables in a schema of their own, connect with
-- `?options=-csearch_path%3Ddocket`.

-- Which migrations have been applied. A release refuses a database whose
-- highest version is newer than the migrations it ships.
CREATE TABLE docket_schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Precious step outputs, both cache scopes in one table.
--   workflow: a checkpoint of one execution (execution_id set);
--   global:   content-addressed, shared by all executions (execution_id NULL).
-- `key` is SHA-256 hex of the scope, step, cache version and either the
-- execution id (workflow) or the deterministic input bytes (global).
CREATE TABLE docket_results (
    key          text PRIMARY KEY,
    scope        text NOT NULL CHECK (scope IN ('workflow', 'global')),
    execution_id text,
    step         text NOT NULL,
    version      text NOT NULL DEFAULT '',
    output_type  text NOT NULL,              -- the message's full name, e.g. shop.Charge
    output       bytea NOT NULL,             -- its proto bytes: what Docket reads back
    output_json  jsonb NOT NULL,             -- the same message as JSON: what you query
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,                -- NULL: never expires
    CHECK ((scope = 'workflow') = (execution_id IS NOT NULL))
);
-- Rerun-from-a-step deletes by (execution_id, step).
CREATE INDEX docket_results_execution ON docket_results (execution_id, step)
    WHERE execution_id IS NOT NULL;
-- Purging expired rows.
CREATE INDEX docket_results_expires ON docket_results (expires_at)
    WHERE expires_at IS NOT NULL;
-- "Today's results of step X".
CREATE INDEX docket_results_step ON docket_results (step, created_at);

-- One row per execution id. An execution run by a durable worker
-- (docket_runtime.procrastinate) is 'queued' first, and 'waiting' while a
-- retry job is scheduled for wake_at.
CREATE TABLE docket_executions (
    execution_id text PRIMARY KEY,
    graph        text NOT NULL,              -- the graph's full name, e.g. shop.OrderGraph
    target       text NOT NULL,              -- the requested message type
    status       text NOT NULL
                 CHECK (status IN ('queued', 'running', 'waiting',
                                   'succeeded', 'failed', 'cancelled')),
    started_at   timestamptz NOT NULL DEFAULT now(),  -- first recorded (queued or started)
    finished_at  timestamptz,
    error        text,                       -- why it failed; while waiting, what it retries
    -- Enqueued executions: the graph inputs by keyword,
    -- {"order": {"type": "shop.Order", "proto": "<base64 bytes>", "json": {...}}}.
    inputs       jsonb,
    wake_at      timestamptz                 -- while waiting: when the retry job is due
);
CREATE INDEX docket_executions_status ON docket_executions (status, started_at);
-- The last succeeded run of a target (a schedule reads its previous output).
CREATE INDEX docket_executions_succeeded ON docket_executions (graph, target, finished_at)
    WHERE status = 'succeeded';

-- The latest run of each step of each execution. An at-most-once step inserts
-- its row ('claimed') before it runs; the primary key makes that claim
-- exclusive. No foreign key to docket_executions: a claim may be taken
-- without recording the execution.
CREATE TABLE docket_step_runs (
    execution_id text NOT NULL,
    step         text NOT NULL,
    status       text NOT NULL
                 CHECK (status IN ('claimed', 'running', 'succeeded', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,  -- starts recorded, across resumes
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    duration_ms  double precision,
    error        text,
    owner        text NOT NULL,               -- host:pid:token of the process that ran it
    PRIMARY KEY (execution_id, step)
);
-- "What is stuck": runs that never reported back.
CREATE INDEX docket_step_runs_unfinished ON docket_step_runs (started_at)
    WHERE finished_at IS NULL;
