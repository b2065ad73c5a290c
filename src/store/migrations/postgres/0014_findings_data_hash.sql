-- The SHA-256 of a finding's data as stored, so a run that sees it
-- unchanged compares hashes instead of rewriting the row's data. NULL for
-- rows written before this column: they are rewritten once, then compared.
ALTER TABLE findings ADD COLUMN data_sha256 TEXT;
