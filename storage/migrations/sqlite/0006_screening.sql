-- Screening: every screening an agency made, the declarations and watchlist entries it
-- watches, and the alerts raised when new intelligence matches them.
-- Same logical schema as migrations/postgres.

CREATE TABLE screenings (
    id TEXT PRIMARY KEY,
    agency TEXT NOT NULL,
    reference TEXT NOT NULL,
    at_micros INTEGER NOT NULL,
    policy_revision TEXT NOT NULL,
    level TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    -- The declaration and the result (protobuf), as screened and as answered.
    declaration BLOB NOT NULL,
    result BLOB NOT NULL
) STRICT;
CREATE INDEX screenings_agency ON screenings (agency, at_micros);

-- What raises alerts: a screened declaration (until its watch ends) or a watchlist entry
-- (until it is removed). `number` identifies it in the gateway's watch index; a watch sees
-- only intelligence after `from_sequence`, the feed position its screening saw.
CREATE TABLE watches (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('declaration', 'entry')),
    agency TEXT NOT NULL,
    -- The screening of a declaration, or the entry's own id.
    reference_id TEXT NOT NULL UNIQUE,
    -- The declaration, or the watchlist entry (protobuf).
    subject BLOB NOT NULL,
    from_sequence INTEGER NOT NULL CHECK (from_sequence >= 0),
    until_micros INTEGER,
    created_micros INTEGER NOT NULL
) STRICT;
CREATE INDEX watches_agency ON watches (agency, kind);

-- Alerts are numbered gap-safe like the feed: writers take numbers by updating this row first.
CREATE TABLE alert_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    head INTEGER NOT NULL CHECK (head >= 0),
    -- How far in the feed alerts have been raised (never backwards).
    feed_cursor INTEGER NOT NULL CHECK (feed_cursor >= 0),
    -- Watches numbered up to this one have been checked against the feed up to feed_cursor.
    watch_cursor INTEGER NOT NULL CHECK (watch_cursor >= 0)
) STRICT;
INSERT INTO alert_head (singleton, head, feed_cursor, watch_cursor) VALUES (1, 0, 0, 0);

CREATE TABLE alerts (
    sequence INTEGER PRIMARY KEY CHECK (sequence > 0),
    agency TEXT NOT NULL,
    watch INTEGER NOT NULL,
    indicator_id TEXT NOT NULL,
    at_micros INTEGER NOT NULL,
    -- The alert (protobuf) without its cursor, which is `sequence`.
    payload BLOB NOT NULL,
    -- One alert per watch and indicator, whoever raises it first.
    UNIQUE (watch, indicator_id)
) STRICT;
CREATE INDEX alerts_agency ON alerts (agency, sequence);
