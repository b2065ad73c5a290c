-- Approval revocations received by the daemon's webhook: applied to the
-- approvals read from their sources on every pass.
CREATE TABLE revocations (
    approval_id  TEXT PRIMARY KEY,
    revoked_at   TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    reason       TEXT
);
