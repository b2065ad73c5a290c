-- The action journal: intent written before the provider call, outcome after.
CREATE TABLE actions (
    id           BIGSERIAL PRIMARY KEY,
    run_id       BIGINT NOT NULL REFERENCES runs(id),
    status       TEXT NOT NULL,       -- intent | done | failed | recovered | undone
    operation    TEXT NOT NULL,
    provider     TEXT NOT NULL,
    source       TEXT NOT NULL,
    identity_id  TEXT NOT NULL,
    credential_id TEXT,
    request      TEXT NOT NULL,       -- ActionRequest JSON
    rules        TEXT NOT NULL,       -- JSON array of rule ids
    findings     TEXT NOT NULL,       -- JSON array of finding fingerprints
    evidence     TEXT NOT NULL,       -- JSON: approval considered per finding
    actor        TEXT NOT NULL,       -- who/what ran it
    planned_undo TEXT,                -- undo data known before the call
    before_state TEXT,
    after_state  TEXT,
    undo         TEXT,
    irreversible TEXT,
    error        TEXT,
    undo_of      BIGINT REFERENCES actions(id),
    intent_at    TEXT NOT NULL,
    outcome_at   TEXT
);

CREATE INDEX actions_open ON actions (status);
CREATE INDEX actions_credential ON actions (credential_id);
