-- SQLite's 0022 drops the covering index of the open findings' keys.
-- PostgreSQL keeps `findings_open_keys` (an index-only scan reads the keys
-- without the rows); the migration numbers stay the same on both.
SELECT 1;
