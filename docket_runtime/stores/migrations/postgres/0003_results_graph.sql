-- Docket schema, version 3 (Postgres).
--
-- Applied by `docketctl db migrate --url postgresql://...` (or open_store(url, migrate=True))
-- in one transaction, under an advisory lock, after version 2.

-- Each kept result names the full name of the graph that wrote it, so that
-- `docketctl cache purge --graph` can find a graph's GLOBAL results: their key
-- digests the graph's name (or a cache namespace), which cannot be read back.
-- NULL for the rows written before this version (adding a nullable column
-- rewrites nothing).
ALTER TABLE docket_results ADD COLUMN graph text;
