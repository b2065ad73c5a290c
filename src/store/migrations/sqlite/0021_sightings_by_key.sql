-- Sightings kept in their primary key's order (WITHOUT ROWID): the table is
-- the B-tree on (fingerprint, first_run), where a rowid table kept a second
-- one beside it for the key, and a third (`finding_sightings_keys`) so a
-- report could read each sighting's keys without its data. A report now
-- reads the keys from the table itself, in the same order; a pass writes
-- each new sighting into two B-trees instead of five (a first scan of a
-- million credentials wrote the key into four).
CREATE TABLE finding_sightings_by_key (
    fingerprint     TEXT NOT NULL,
    first_run       BIGINT NOT NULL REFERENCES runs(id),
    last_run        BIGINT NOT NULL REFERENCES runs(id),
    rule_id         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    source          TEXT NOT NULL,      -- inventory source name; '' for approval records
    credential_kind TEXT,
    data_sha256     TEXT NOT NULL,
    data            TEXT NOT NULL,      -- the finding JSON, or '' with data_packed set
    depends         TEXT,
    open_ended      INTEGER NOT NULL DEFAULT 0,
    data_packed     BLOB,
    PRIMARY KEY (fingerprint, first_run)
) WITHOUT ROWID;

INSERT INTO finding_sightings_by_key (fingerprint, first_run, last_run, rule_id, severity,
        source, credential_kind, data_sha256, data, depends, open_ended, data_packed)
    SELECT fingerprint, first_run, last_run, rule_id, severity,
        source, credential_kind, data_sha256, data, depends, open_ended, data_packed
    FROM finding_sightings ORDER BY fingerprint, first_run;

DROP TABLE finding_sightings;
ALTER TABLE finding_sightings_by_key RENAME TO finding_sightings;

-- Not made again: `finding_sightings_last_run` (last_run, first_run). No
-- query reads through it (a run's sightings are found by first run and
-- open-endedness, which it does not order), and runs are never deleted,
-- so no foreign-key check needs it; without a rowid it would carry the
-- fingerprint too (109 MB at a million). A change that deletes runs must
-- index the sightings' run references again.
CREATE INDEX finding_sightings_open ON finding_sightings (fingerprint, data_sha256, depends)
 WHERE open_ended = 1;
CREATE INDEX finding_sightings_closed
    ON finding_sightings (fingerprint, first_run, last_run)
 WHERE open_ended = 0;

-- Rewritten: the open state's digest is kept only over tables no write
-- has touched since (src/store/open_state.rs).
DELETE FROM open_state;
