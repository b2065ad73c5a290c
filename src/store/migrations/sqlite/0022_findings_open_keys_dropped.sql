-- The covering index of the open findings' keys is dropped: a pass that
-- must read them back (one whose findings' digest differs from the open
-- state's, 0020) reads them through the primary key's index, in
-- fingerprint order, from rows written in that order. Every finding was
-- written into four B-trees, this one the largest (234 MB of a 2 GB store
-- at a million findings); now three.
-- (Stored WITHOUT ROWID instead, as the sightings are since 0021, the
-- findings wrote 430 MB less at a million but took longer: the identity
-- index then carries the fingerprint, and is written out of its order.)
DROP INDEX findings_open_keys;

-- Rewritten: see 0021.
DELETE FROM open_state;
