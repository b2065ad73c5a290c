-- The leader lease: among processes sharing this store, only the holder of
-- an unexpired lease runs passes and acts. `token` grows on every change of
-- holder and fences a stale leader's writes to the journal.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL      -- store clock, Unix milliseconds
);
