-- Federation: gateways following each other's feeds. Same logical schema as
-- migrations/postgres; the new table is STRICT as the others are. (A CHECK of
-- a column added here stands for the table constraint PostgreSQL adds.)
--
-- A retraction may carry its originator's signature, so that a gateway can
-- pass it on to its own followers as received. Opaque bytes to storage.
ALTER TABLE events ADD COLUMN signature BLOB
    CHECK (signature IS NULL OR event_type = 'retracted');

-- via: the member id of the peer gateway the indicator was received through,
-- NULL when it was published at this gateway.
-- superseded_by: the id of the indicator that revises this one (the latest
-- revision received wins), NULL while none does.
ALTER TABLE indicators ADD COLUMN via TEXT;
ALTER TABLE indicators ADD COLUMN superseded_by TEXT REFERENCES indicators (id);

-- How far this gateway has read each peer's feed: the peer's sequence, moved
-- in the same transaction as the items it covers and never backwards.
CREATE TABLE peer_cursors (
    peer TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL CHECK (cursor >= 0),
    updated_micros INTEGER NOT NULL
) STRICT;
