-- Open-ended rows: a finding (or sighting) with `open_ended = 1` was seen,
-- as stored, by every run from its `last_run` to the latest one (for a
-- sighting: the latest run with recorded detail). A pass that sees it
-- unchanged writes nothing; the row is closed (its `last_run` set to the
-- last run that saw it) only when a run does not see it, or sees it
-- changed. Before this, an unchanged pass rewrote every open finding's
-- `last_seen` and every sighting's `last_run`.
ALTER TABLE findings ADD COLUMN open_ended INTEGER NOT NULL DEFAULT 0;
ALTER TABLE finding_sightings ADD COLUMN open_ended INTEGER NOT NULL DEFAULT 0;

-- What the latest runs saw is what is open-ended now.
UPDATE findings SET open_ended = 1
 WHERE resolved_at IS NULL AND last_run = (SELECT MAX(id) FROM runs);
UPDATE finding_sightings SET open_ended = 1
 WHERE last_run = (SELECT MAX(run_id) FROM run_snapshots);

-- A pass reads the open-ended sightings' keys (and what they depend on)
-- from this index alone, not from rows carrying the finding's data.
CREATE INDEX finding_sightings_open ON finding_sightings (fingerprint, data_sha256, depends)
 WHERE open_ended = 1;

-- A pass reads every open finding's keys to tell what it changes: from
-- this index alone, in fingerprint order, not from rows carrying the data
-- (the index on (resolved_at, source) it replaces led SQLite's planner to
-- read every open row and sort them, per page).
DROP INDEX findings_open;
CREATE INDEX findings_open_keys ON findings (fingerprint, data_sha256, depends, source, open_ended)
 WHERE resolved_at IS NULL;

-- A targeted pass (an approval's end, a webhook event) re-reads and records
-- only its subjects: their identity ids, as JSON; NULL for a full pass.
-- Open-ended rows count full passes; a targeted pass writes what it saw of
-- its subjects, and keeps no reading (reports read the latest full pass).
ALTER TABLE runs ADD COLUMN scope TEXT;
