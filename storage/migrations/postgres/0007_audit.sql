-- The verifiable record: an append-only Merkle log (crate cordon-tlog) of what this gateway
-- stored, appended in the same transaction as what it records. Same logical schema as
-- migrations/sqlite. The log starts when this migration runs.

-- Appends take numbers by updating this row first (after the feed head, where both are taken).
CREATE TABLE audit_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    size BIGINT NOT NULL CHECK (size >= 0)
);
INSERT INTO audit_head (singleton, size) VALUES (TRUE, 0);

-- Each entry's canonical bytes (cordon_tlog::Entry), by position from 0, with the stored hashes
-- its append wrote (the hashes of the complete subtrees ending at it, levels 0 up, 32 bytes
-- each: every complete subtree's hash is stored once, in the row of its last entry).
CREATE TABLE audit_entries (
    position BIGINT PRIMARY KEY CHECK (position >= 0),
    indicator_id TEXT,
    entry BYTEA NOT NULL,
    hashes BYTEA NOT NULL CHECK (length(hashes) >= 32 AND length(hashes) % 32 = 0)
);
CREATE INDEX audit_entries_indicator ON audit_entries (indicator_id) WHERE indicator_id IS NOT NULL;

-- The latest checkpoint of each peer's log that this gateway checked: the next one must extend
-- it (consistency proof). It is replaced only by a checkpoint proven to extend it.
CREATE TABLE peer_checkpoints (
    peer TEXT PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0),
    root BYTEA NOT NULL CHECK (length(root) = 32),
    note TEXT NOT NULL,
    at_micros BIGINT NOT NULL
);

-- Each release decision names the audit log entry of its batch (NULL for decisions stored
-- before the log existed), so that an auditor can recompute the batch's digest.
ALTER TABLE decisions ADD COLUMN audit_position BIGINT;
CREATE INDEX decisions_audit_position ON decisions (audit_position) WHERE audit_position IS NOT NULL;
