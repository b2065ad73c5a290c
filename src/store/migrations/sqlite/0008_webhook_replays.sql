-- Webhook signatures already accepted, so a replayed event is refused by
-- every replica and after a restart. Keyed on the MAC's bytes as lowercase
-- hex (the header's spelling does not matter); a row is needed only until
-- its event's timestamp leaves the window (`expires_at`, Unix seconds).
CREATE TABLE webhook_replays (
    mac        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webhook_replays_expiry ON webhook_replays (expires_at);
