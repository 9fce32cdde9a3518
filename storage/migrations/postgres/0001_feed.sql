-- The feed: an append-only event log numbered without gaps, the indicators it
-- published, and the one-row head that hands out sequence numbers.

-- Writers take their sequence numbers by updating this row as the first
-- statement of their transaction. The row lock makes them commit in sequence
-- order, which a PostgreSQL SEQUENCE would not (a reader could then skip a
-- number whose transaction commits late).
CREATE TABLE feed_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    head BIGINT NOT NULL CHECK (head >= 0)
);
INSERT INTO feed_head (singleton, head) VALUES (TRUE, 0);

CREATE TABLE events (
    sequence BIGINT PRIMARY KEY CHECK (sequence > 0),
    event_type TEXT NOT NULL CHECK (event_type IN ('published', 'retracted')),
    -- The indicator's kind, so that subscribers filtering by kind also get
    -- the retractions of what they received.
    kind TEXT NOT NULL,
    indicator_id TEXT NOT NULL,
    originator TEXT NOT NULL,
    payload BYTEA,
    reason TEXT,
    at_micros BIGINT NOT NULL,
    CHECK ((event_type = 'published') = (payload IS NOT NULL)),
    CHECK ((event_type = 'retracted') = (reason IS NOT NULL))
);
CREATE INDEX events_kind_sequence ON events (kind, sequence);

CREATE TABLE indicators (
    id TEXT PRIMARY KEY,
    originator TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BYTEA NOT NULL,
    sequence BIGINT NOT NULL REFERENCES events (sequence),
    retracted BOOLEAN NOT NULL DEFAULT FALSE
);

-- Every head change wakes the followers of every process on this database,
-- at commit. The payload names the schema, because several feeds (tests,
-- tenants) may share one database and NOTIFY channels are database-wide.
CREATE FUNCTION notify_feed_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cordon_feed', TG_TABLE_SCHEMA || ':' || NEW.head);
    RETURN NULL;
END
$$;

CREATE TRIGGER feed_head_notify
    AFTER UPDATE ON feed_head
    FOR EACH ROW EXECUTE FUNCTION notify_feed_head();
