-- Just-in-time sessions issued under an approval (issue 18). Ids and
-- metadata only: the session's secret and token go to the caller and are
-- never written anywhere. The reconciler reads this to know which roles
-- need a deny-on-revoke policy, and until when.
CREATE TABLE issued_sessions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id     TEXT NOT NULL,
    provider        TEXT NOT NULL,    -- aws
    source          TEXT NOT NULL,    -- config source it was issued through
    role            TEXT NOT NULL,    -- role ARN assumed
    session_name    TEXT NOT NULL,
    source_identity TEXT NOT NULL,
    access_key_id   TEXT NOT NULL,    -- ASIA… id, not a secret
    caller          TEXT NOT NULL,    -- who asked (CLI user, workload subject)
    issued_at       TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);

CREATE INDEX issued_sessions_approval ON issued_sessions (approval_id);
