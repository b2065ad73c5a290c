-- A sighting's finding data compressed (src/store/packed.rs: a format
-- byte, then zstd against a fixed dictionary), `data` then ''. Rows
-- written before keep their JSON text in `data` and no packed value.
-- Stored as it is (PostgreSQL's own compression would gain nothing).
ALTER TABLE finding_sightings ADD COLUMN data_packed BYTEA;
ALTER TABLE finding_sightings ALTER COLUMN data_packed SET STORAGE EXTERNAL;
