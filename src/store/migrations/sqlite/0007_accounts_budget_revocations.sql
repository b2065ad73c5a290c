-- Where each action ran (account or tenant, and the role or credentials
-- used); the action budget counts intents by time, so index them by it;
-- revocations can be withdrawn (kept, marked) and are marked when they name
-- no approval any source knows.
ALTER TABLE actions ADD COLUMN via TEXT;
CREATE INDEX actions_intent_at ON actions (intent_at);
ALTER TABLE revocations ADD COLUMN withdrawn_at TEXT;
ALTER TABLE revocations ADD COLUMN withdrawn_by TEXT;
ALTER TABLE revocations ADD COLUMN withdraw_reason TEXT;
ALTER TABLE revocations ADD COLUMN unmatched_since TEXT;
