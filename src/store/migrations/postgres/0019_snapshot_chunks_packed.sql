-- A reading's chunk compressed (src/store/packed.rs: format byte 2, zstd
-- without a dictionary), `body` then ''. Chunks written before keep
-- their text; whole bodies (small readings, rules) stay text.
-- Stored as it is (PostgreSQL's own compression would gain nothing).
ALTER TABLE snapshot_blobs ADD COLUMN body_packed BYTEA;
ALTER TABLE snapshot_blobs ALTER COLUMN body_packed SET STORAGE EXTERNAL;
