-- Runs and findings with their lifecycle.
CREATE TABLE runs (
    id          BIGSERIAL PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    as_of       TEXT NOT NULL,
    command     TEXT NOT NULL,
    sources     TEXT NOT NULL,          -- JSON: per-source status
    findings    BIGINT NOT NULL,
    opened      BIGINT NOT NULL,
    resolved    BIGINT NOT NULL
);

CREATE TABLE findings (
    fingerprint  TEXT PRIMARY KEY,      -- rule_id|identity_id|credential or approval
    rule_id      TEXT NOT NULL,
    severity     TEXT NOT NULL,
    provider     TEXT,
    source       TEXT NOT NULL,         -- inventory source name; '' for approval records
    identity_id  TEXT NOT NULL,
    credential_id TEXT,
    credential_kind TEXT,               -- access_key, ssh_key, …: a gap in one kind blinds only it
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    resolved_at  TEXT,
    first_run    BIGINT NOT NULL REFERENCES runs(id),
    last_run     BIGINT NOT NULL REFERENCES runs(id),
    data         TEXT NOT NULL          -- the finding JSON (contract form)
);

CREATE INDEX findings_open ON findings (resolved_at, source);
CREATE INDEX findings_identity ON findings (identity_id);
