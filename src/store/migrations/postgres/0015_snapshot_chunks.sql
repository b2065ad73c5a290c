-- A large reading body (inventory, approvals) is stored as content-defined
-- chunks, each a snapshot_blobs row by its own hash: a run whose estate
-- changed a little adds the few chunks that changed, not the whole body.
-- The body's own row keeps its hash (what run_snapshots names) with an
-- empty body; its chunks, in order, are listed here.
CREATE TABLE snapshot_chunks (
    blob_sha256   TEXT NOT NULL REFERENCES snapshot_blobs(sha256),
    seq           INTEGER NOT NULL,
    chunk_sha256  TEXT NOT NULL REFERENCES snapshot_blobs(sha256),
    PRIMARY KEY (blob_sha256, seq)
);
