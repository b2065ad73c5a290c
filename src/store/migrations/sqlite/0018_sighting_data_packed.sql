-- A sighting's finding data compressed (src/store/packed.rs: a format
-- byte, then zstd against a fixed dictionary), `data` then ''. Rows
-- written before keep their JSON text in `data` and no packed value.
ALTER TABLE finding_sightings ADD COLUMN data_packed BLOB;
