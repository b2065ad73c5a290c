-- The format of a run's reading (its per-source inventories, approvals and
-- rules as JSON), so a later version reads old rows as what they are and
-- an older version refuses rows it cannot read instead of misreading them.
-- Rows written before this column existed are format 1.
ALTER TABLE run_snapshots ADD COLUMN format_version INTEGER NOT NULL DEFAULT 1;
