-- Per-run detail, so a report can be made for any past run: which findings
-- each run saw (as it saw them) and what it read (inventory snapshot,
-- approvals as read, rules evaluated). Stored by change, not by run, so a
-- daemon passing every few minutes over a stable estate adds little:
--
-- * a finding seen with the same data by consecutive runs is one sighting
--   row, its `last_run` moved forward; a change of data, or a run that did
--   not see it, starts a new row;
-- * snapshot parts are kept once per content (SHA-256), runs point at them.
--
-- Portable SQL: the same text runs on SQLite and PostgreSQL.
CREATE TABLE finding_sightings (
    fingerprint     TEXT NOT NULL,
    first_run       BIGINT NOT NULL REFERENCES runs(id),
    last_run        BIGINT NOT NULL REFERENCES runs(id),
    rule_id         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    source          TEXT NOT NULL,      -- inventory source name; '' for approval records
    credential_kind TEXT,
    data_sha256     TEXT NOT NULL,
    data            TEXT NOT NULL,      -- the finding JSON (contract form) as these runs saw it
    PRIMARY KEY (fingerprint, first_run)
);

CREATE INDEX finding_sightings_last_run ON finding_sightings (last_run, first_run);

CREATE TABLE snapshot_blobs (
    sha256  TEXT PRIMARY KEY,
    body    TEXT NOT NULL               -- JSON
);

CREATE TABLE run_snapshots (
    run_id            BIGINT PRIMARY KEY REFERENCES runs(id),
    inventory_sha256  TEXT NOT NULL REFERENCES snapshot_blobs(sha256),  -- per source: state and inventory (ids and metadata only)
    approvals_sha256  TEXT NOT NULL REFERENCES snapshot_blobs(sha256),  -- the approvals as read (revocations applied)
    rules_sha256      TEXT NOT NULL REFERENCES snapshot_blobs(sha256)   -- the rules evaluated, with their controls
);
