-- Docket schema, version 3 (SQLite).
--
-- Applied by `docketctl db migrate --url sqlite:///path.db` (or
-- open_store(url, migrate=True)) in one BEGIN IMMEDIATE transaction, after
-- version 2.

-- Each kept result names the full name of the graph that wrote it, so that
-- `docketctl cache purge --graph` can find a graph's GLOBAL results: their key
-- digests the graph's name (or a cache namespace), which cannot be read back.
-- NULL for the rows written before this version.
ALTER TABLE docket_results ADD COLUMN graph TEXT;
