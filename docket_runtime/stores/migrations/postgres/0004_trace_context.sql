-- Docket schema, version 4 (Postgres).
--
-- Applied by `docketctl db migrate --url postgresql://...` (or open_store(url, migrate=True))
-- in one transaction, under an advisory lock, after version 3.

-- The trace context of the enqueue that queued an execution, when the graph
-- is traced (docket_runtime.otel): what the OpenTelemetry propagator writes,
-- by default {"traceparent": "00-<trace id>-<span id>-01"}. Each job that
-- resumes the execution joins that trace. NULL when nothing was traced. A
-- column of its own, not a key of `inputs`: enqueueing the same execution
-- again from another trace must still compare equal inputs.
ALTER TABLE docket_executions ADD COLUMN trace_context jsonb;
