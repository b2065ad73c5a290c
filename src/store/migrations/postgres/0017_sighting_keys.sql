-- A report first reads which findings a run saw, and their severities, to
-- order them: from this index alone. Through the primary key it read
-- every sighting's row, evidence and all (5 s of a report at a million
-- findings, before the first one was written).
CREATE INDEX finding_sightings_keys
    ON finding_sightings (fingerprint, first_run, last_run, open_ended, severity);

-- The findings a run may have resolved are among the closed sightings:
-- found here, not by a scan of every sighting (a run that resolved
-- nothing scanned a million).
CREATE INDEX finding_sightings_closed
    ON finding_sightings (fingerprint, first_run, last_run)
 WHERE open_ended = 0;
