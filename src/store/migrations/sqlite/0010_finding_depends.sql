-- What each finding depends on (the facets a source's gap can blind: what
-- its rule reads, its credential's and identity's kinds), as the JSON list
-- of the contract's `Blinds`, so a later run resolves it only if it saw
-- all of that. Rows written before this column are NULL: they are judged
-- as they were then (any gap but one in another credential kind holds them).
ALTER TABLE findings ADD COLUMN depends TEXT;
ALTER TABLE finding_sightings ADD COLUMN depends TEXT;
