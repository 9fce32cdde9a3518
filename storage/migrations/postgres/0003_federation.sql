-- Federation: gateways following each other's feeds.
--
-- A retraction may carry its originator's signature, so that a gateway can
-- pass it on to its own followers as received. Opaque bytes to storage.
ALTER TABLE events ADD COLUMN signature BYTEA;
ALTER TABLE events ADD CONSTRAINT events_signature_of_retraction
    CHECK (signature IS NULL OR event_type = 'retracted');

-- via: the member id of the peer gateway the indicator was received through,
-- NULL when it was published at this gateway.
-- superseded_by: the id of the indicator that revises this one (the latest
-- revision received wins), NULL while none does.
ALTER TABLE indicators ADD COLUMN via TEXT;
ALTER TABLE indicators ADD COLUMN superseded_by TEXT REFERENCES indicators (id);

-- How far this gateway has read each peer's feed: the peer's sequence, moved
-- in the same transaction as the items it covers and never backwards.
-- peer is compared bytewise (COLLATE "C"), as SQLite does, so the listing
-- order is the same on both backends.
CREATE TABLE peer_cursors (
    peer TEXT COLLATE "C" PRIMARY KEY,
    cursor BIGINT NOT NULL CHECK (cursor >= 0),
    updated_micros BIGINT NOT NULL
);

-- Wake followers only when the head moves. A receive locks the head with a
-- no-op update as its first statement (and a pure checkpoint never moves it);
-- without the WHEN those would notify the unchanged head.
DROP TRIGGER feed_head_notify ON feed_head;
CREATE TRIGGER feed_head_notify
    AFTER UPDATE ON feed_head
    FOR EACH ROW
    WHEN (NEW.head IS DISTINCT FROM OLD.head)
    EXECUTE FUNCTION notify_feed_head();
