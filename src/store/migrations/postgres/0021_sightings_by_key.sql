-- SQLite's 0021 stores sightings by their key (WITHOUT ROWID) and drops the
-- covering index of their keys it no longer needs. PostgreSQL keeps its
-- heap and `finding_sightings_keys` (an index-only scan reads the keys
-- without the rows); the migration numbers stay the same on both.
SELECT 1;
