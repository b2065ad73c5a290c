-- Subjects a run held (the subjects of approval records a source could not
-- map, or every subject), as JSON; NULL when nothing was held. None of
-- their findings is resolved by that run, here or when the run is replayed.
ALTER TABLE runs ADD COLUMN held TEXT;
