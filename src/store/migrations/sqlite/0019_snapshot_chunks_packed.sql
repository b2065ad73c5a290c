-- A reading's chunk compressed (src/store/packed.rs: format byte 2, zstd
-- without a dictionary), `body` then ''. Chunks written before keep
-- their text; whole bodies (small readings, rules) stay text.
ALTER TABLE snapshot_blobs ADD COLUMN body_packed BLOB;
