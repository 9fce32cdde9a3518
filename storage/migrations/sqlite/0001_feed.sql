-- The feed: an append-only event log numbered without gaps, the indicators it
-- published, and the one-row head that hands out sequence numbers.
-- Same logical schema as migrations/postgres; STRICT so that a value of the
-- wrong type is refused as it would be by PostgreSQL.

-- Writers take their sequence numbers by updating this row as the first
-- statement of their transaction, as on PostgreSQL.
CREATE TABLE feed_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    head INTEGER NOT NULL CHECK (head >= 0)
) STRICT;
INSERT INTO feed_head (singleton, head) VALUES (1, 0);

CREATE TABLE events (
    sequence INTEGER PRIMARY KEY CHECK (sequence > 0),
    event_type TEXT NOT NULL CHECK (event_type IN ('published', 'retracted')),
    -- The indicator's kind, so that subscribers filtering by kind also get
    -- the retractions of what they received.
    kind TEXT NOT NULL,
    indicator_id TEXT NOT NULL,
    originator TEXT NOT NULL,
    payload BLOB,
    reason TEXT,
    at_micros INTEGER NOT NULL,
    CHECK ((event_type = 'published') = (payload IS NOT NULL)),
    CHECK ((event_type = 'retracted') = (reason IS NOT NULL))
) STRICT;
CREATE INDEX events_kind_sequence ON events (kind, sequence);

CREATE TABLE indicators (
    id TEXT PRIMARY KEY,
    originator TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    sequence INTEGER NOT NULL REFERENCES events (sequence),
    retracted INTEGER NOT NULL DEFAULT 0 CHECK (retracted IN (0, 1))
) STRICT;
