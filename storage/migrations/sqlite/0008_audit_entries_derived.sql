-- The entry of an indicator published or received is not stored: it is derived from the
-- indicator's own row (id, originator, via and the digest of its payload), which is written in
-- the same transaction and never changes. Only its hashes are kept. Other entries (retractions,
-- policy activations, circle membership, decision batches) keep their canonical bytes.
CREATE TABLE audit_entries_derived (
    position INTEGER PRIMARY KEY CHECK (position >= 0),
    indicator_id TEXT,
    entry BLOB,
    hashes BLOB NOT NULL CHECK (length(hashes) >= 32 AND length(hashes) % 32 = 0),
    CHECK (entry IS NOT NULL OR indicator_id IS NOT NULL)
) STRICT;
INSERT INTO audit_entries_derived (position, indicator_id, entry, hashes)
    SELECT position, indicator_id, entry, hashes FROM audit_entries;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_derived RENAME TO audit_entries;
CREATE INDEX audit_entries_indicator ON audit_entries (indicator_id) WHERE indicator_id IS NOT NULL;

-- The log's size moves to the feed head's row: a feed write updates that row already, so
-- numbering its entries writes no other page. Decision batches and policy activations update
-- the same row (only its audit_size).
ALTER TABLE feed_head ADD COLUMN audit_size INTEGER NOT NULL DEFAULT 0 CHECK (audit_size >= 0);
UPDATE feed_head SET audit_size = (SELECT size FROM audit_head);
DROP TABLE audit_head;
