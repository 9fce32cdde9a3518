-- The decision log in compact form (issue 14): the decisions of one write are stored as one
-- batch (their fields encoded once, each distinct string once; crate code `decisions/packed.rs`)
-- with a narrow key row per indicator and per recipient the batch names, instead of one row of
-- four index entries per decision. Decisions stored before this migration stay in `decisions`
-- and are read beside the batches; new ones go to the batches only. Same logical schema as
-- migrations/postgres.
--
-- A batch spans at most ten minutes (first to last decision), so a read from time t starts at
-- the batches that start after t minus ten minutes.
CREATE TABLE decision_batches (
    batch_id INTEGER PRIMARY KEY,
    first_micros INTEGER NOT NULL,
    last_micros INTEGER NOT NULL CHECK (last_micros >= first_micros),
    audit_position INTEGER,
    decisions INTEGER NOT NULL CHECK (decisions > 0),
    body BLOB NOT NULL
) STRICT;
CREATE INDEX decision_batches_time ON decision_batches (first_micros, batch_id);
CREATE INDEX decision_batches_audit_position ON decision_batches (audit_position)
    WHERE audit_position IS NOT NULL;

-- 'i:' || indicator id, or 'r:' || recipient: each once per batch that holds a decision of it.
CREATE TABLE decision_keys (
    key TEXT NOT NULL,
    first_micros INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    PRIMARY KEY (key, first_micros, batch_id)
) STRICT, WITHOUT ROWID;

-- The oversight page's counts, kept as batches are written and purged: decisions per
-- recipient, channel, policy revision and outcome, with their first and last time (after a
-- purge, the first time of a group it shortened is the purge's cutoff: the earliest a
-- remaining decision can be).
CREATE TABLE decision_groups (
    recipient TEXT NOT NULL,
    channel TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    allow INTEGER NOT NULL CHECK (allow IN (0, 1)),
    redacted INTEGER NOT NULL CHECK (redacted IN (0, 1)),
    failed INTEGER NOT NULL CHECK (failed IN (0, 1)),
    count INTEGER NOT NULL CHECK (count >= 0),
    first_micros INTEGER NOT NULL,
    last_micros INTEGER NOT NULL,
    PRIMARY KEY (recipient, channel, policy_revision, allow, redacted, failed)
) STRICT, WITHOUT ROWID;

-- Which feed events a batch holds decisions on, per recipient and policy revision: a page of
-- the feed after from_sequence up to to_sequence, decided for the recipient. A re-read of those
-- events under the same revision finds the decisions here, and stores only those that differ.
CREATE TABLE decision_pages (
    recipient TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    to_sequence INTEGER NOT NULL,
    from_sequence INTEGER NOT NULL CHECK (from_sequence < to_sequence),
    batch_id INTEGER NOT NULL,
    PRIMARY KEY (recipient, policy_revision, to_sequence, batch_id)
) STRICT, WITHOUT ROWID;
-- A purge deletes the pages of the batches it deletes.
CREATE INDEX decision_pages_batch ON decision_pages (batch_id);
