-- The decision log: one row per release decision of the sharing policy, kept
-- until the retention purge removes it. Same logical schema as
-- migrations/postgres; STRICT as the feed's tables are.
--
-- SQLite compares text bytewise (BINARY), as the PostgreSQL table does with
-- COLLATE "C", so the keyset order (at_micros, decision_id) is the same on both.
-- redact and reasons are JSON arrays of strings, kept as text so that they
-- read back exactly as written.
CREATE TABLE decisions (
    decision_id TEXT PRIMARY KEY,
    at_micros INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    indicator_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    allow INTEGER NOT NULL CHECK (allow IN (0, 1)),
    redact TEXT NOT NULL CHECK (json_type(redact) = 'array'),
    reasons TEXT NOT NULL CHECK (json_type(reasons) = 'array'),
    error TEXT
) STRICT;

-- One index per query shape, each ending in the keyset order so that a page is
-- a range scan that stops after its limit: by time (also the purge), by
-- indicator, by recipient.
CREATE INDEX decisions_time ON decisions (at_micros, decision_id);
CREATE INDEX decisions_indicator ON decisions (indicator_id, at_micros, decision_id);
CREATE INDEX decisions_recipient ON decisions (recipient, at_micros, decision_id);
