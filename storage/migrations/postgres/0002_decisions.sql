-- The decision log: one row per release decision of the sharing policy, kept
-- until the retention purge removes it.
--
-- decision_id is compared bytewise (COLLATE "C"), as SQLite and Rust compare
-- strings, so that the keyset order (at_micros, decision_id) and therefore
-- pagination are the same on both backends whatever the database's locale.
-- redact and reasons are JSON arrays of strings, kept as text so that they
-- read back exactly as written.
CREATE TABLE decisions (
    decision_id TEXT COLLATE "C" PRIMARY KEY,
    at_micros BIGINT NOT NULL,
    recipient TEXT NOT NULL,
    indicator_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    allow BOOLEAN NOT NULL,
    redact TEXT NOT NULL CHECK (json_typeof(redact::json) = 'array'),
    reasons TEXT NOT NULL CHECK (json_typeof(reasons::json) = 'array'),
    error TEXT
);

-- One index per query shape, each ending in the keyset order so that a page is
-- a range scan that stops after its limit: by time (also the purge), by
-- indicator, by recipient.
CREATE INDEX decisions_time ON decisions (at_micros, decision_id);
CREATE INDEX decisions_indicator ON decisions (indicator_id, at_micros, decision_id);
CREATE INDEX decisions_recipient ON decisions (recipient, at_micros, decision_id);
