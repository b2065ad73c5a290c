-- Per-run detail, so a report can be made for any past run: which findings
-- the run saw (as it saw them), and what it read (inventory snapshot,
-- approvals as read, rules evaluated). Portable SQL: the same text runs on
-- SQLite and PostgreSQL.
CREATE TABLE run_findings (
    run_id          BIGINT NOT NULL REFERENCES runs(id),
    fingerprint     TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    source          TEXT NOT NULL,      -- inventory source name; '' for approval records
    credential_kind TEXT,
    data            TEXT NOT NULL,      -- the finding JSON (contract form) as this run saw it
    PRIMARY KEY (run_id, fingerprint)
);

CREATE INDEX run_findings_fingerprint ON run_findings (fingerprint);

CREATE TABLE run_snapshots (
    run_id     BIGINT PRIMARY KEY REFERENCES runs(id),
    inventory  TEXT NOT NULL,           -- JSON: per source, its state and inventory (ids and metadata only)
    approvals  TEXT NOT NULL,           -- JSON: the approvals as read (revocations applied)
    rules      TEXT NOT NULL            -- JSON: the rules evaluated, with their controls
);
