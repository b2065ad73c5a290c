-- The open findings and sightings as the full run `run_id` left them, by
-- digest (src/store/open_state.rs): the next full run whose findings have
-- the same digest changed nothing and does not read them back. Every
-- other write to `findings` or `finding_sightings` deletes the row in its
-- transaction; a later migration that changes either table must too.
CREATE TABLE open_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    digest TEXT NOT NULL,
    run_id BIGINT NOT NULL
);
