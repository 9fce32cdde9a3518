-- The entry of an indicator published or received is not stored: it is derived from the
-- indicator's own row (id, originator, via and the digest of its payload), which is written in
-- the same transaction and never changes. Only its hashes are kept. Other entries (retractions,
-- policy activations, circle membership, decision batches) keep their canonical bytes.
ALTER TABLE audit_entries ALTER COLUMN entry DROP NOT NULL;
ALTER TABLE audit_entries ADD CONSTRAINT audit_entries_entry_or_indicator
    CHECK (entry IS NOT NULL OR indicator_id IS NOT NULL);

-- The log's size moves to the feed head's row: a feed write updates that row already, so
-- numbering its entries writes no other page. Decision batches and policy activations update
-- the same row (only its audit_size), which must not wake the feed's subscribers.
ALTER TABLE feed_head ADD COLUMN audit_size BIGINT NOT NULL DEFAULT 0 CHECK (audit_size >= 0);
UPDATE feed_head SET audit_size = (SELECT size FROM audit_head);
DROP TABLE audit_head;
DROP TRIGGER feed_head_notify ON feed_head;
CREATE TRIGGER feed_head_notify
    AFTER UPDATE ON feed_head
    FOR EACH ROW WHEN (OLD.head IS DISTINCT FROM NEW.head)
    EXECUTE FUNCTION notify_feed_head();
