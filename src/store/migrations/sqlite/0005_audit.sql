-- The hash-chained audit log: each entry carries the SHA-256 of the one
-- before it, so an edited, removed or reordered entry breaks the chain
-- (`nhi-assure audit verify`).
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,   -- 1, 2, 3, … without gaps
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,         -- run.recorded, finding.opened, action.intent, …
    run_id     INTEGER,
    subject    TEXT,                  -- finding fingerprint, action id, approval id, config path
    data       TEXT NOT NULL,         -- JSON
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE INDEX audit_run ON audit (run_id);
