-- The notification delivery journal: one row per event (a finding's
-- opening, resolution, action or pending-action warning) per sink per try
-- of a pass's digest. An event already `sent` to a sink is not sent there
-- again: warnings are keyed on their finding, kind and deadline (`dedup`).
-- Never a secret: sink names and kinds only, errors bounded and redacted.
CREATE TABLE notify_journal (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    run_id      BIGINT,
    sink        TEXT NOT NULL,
    sink_kind   TEXT NOT NULL,
    owner       TEXT NOT NULL,
    kind        TEXT NOT NULL,        -- finding.opened, finding.resolved, action.taken, action.pending, action.reminder, exception.expired
    fingerprint TEXT NOT NULL,        -- the finding the event is about
    dedup       TEXT NOT NULL,        -- the deadline (warnings) or run id
    digest_size INTEGER NOT NULL,     -- events in the message it went in
    status      TEXT NOT NULL,        -- sent | failed
    attempts    INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX notify_journal_event ON notify_journal (fingerprint, kind, dedup);
