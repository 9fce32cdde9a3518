-- Circles: MLS groups (RFC 9420) through which members share source-protected
-- indicators, with the hub's log of each circle's messages and the KeyPackages
-- this gateway offers to be added with. Same logical schema as
-- migrations/postgres; the new tables are STRICT as the others are.

-- The circle a source-protected indicator was published or received in, NULL
-- for an indicator of the feed at large.
ALTER TABLE indicators ADD COLUMN circle TEXT;

-- The openmls key-value storage: opaque keys and values, among them the group
-- secrets. WITHOUT ROWID, so that a value is kept in one b-tree only; with the
-- connections' secure_delete a deleted value is overwritten with zeros, and
-- gone from the files once the WAL is checkpointed (see Store::checkpoint).
CREATE TABLE mls_kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL
) STRICT, WITHOUT ROWID;

-- One row per circle this gateway is the hub or a member of. position: at the
-- hub, the number of entries in the circle's log; at a member, the number of
-- log entries it has consumed.
CREATE TABLE circles (
    name TEXT PRIMARY KEY,
    group_id BLOB NOT NULL,
    hub TEXT NOT NULL,
    epoch INTEGER NOT NULL CHECK (epoch >= 0),
    position INTEGER NOT NULL CHECK (position >= 0),
    status TEXT NOT NULL CHECK (status IN ('active', 'removed')),
    created_micros INTEGER NOT NULL
) STRICT;

-- The hub's log of each circle: the MLS messages in the order the hub accepted
-- them, positions from 1 without gaps. The primary key refuses a second entry
-- at a position, so two commits racing for one epoch cannot both be logged.
CREATE TABLE circle_log (
    circle TEXT NOT NULL,
    position INTEGER NOT NULL CHECK (position > 0),
    epoch INTEGER NOT NULL CHECK (epoch >= 0),
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    message BLOB NOT NULL,
    at_micros INTEGER NOT NULL,
    PRIMARY KEY (circle, position)
) STRICT;

-- A member removed from a circle may still read its log up to last_position,
-- the commit that removed it.
CREATE TABLE circle_departures (
    circle TEXT NOT NULL,
    member TEXT NOT NULL,
    last_position INTEGER NOT NULL CHECK (last_position >= 0),
    PRIMARY KEY (circle, member)
) STRICT;

-- The KeyPackages this gateway published (their private keys are in mls_kv),
-- and to whom each was last handed out. A last-resort one may be handed out
-- again.
CREATE TABLE circle_key_packages (
    hash_ref BLOB PRIMARY KEY,
    key_package BLOB NOT NULL,
    last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
    issued_to TEXT,
    issued_micros INTEGER,
    created_micros INTEGER NOT NULL,
    CHECK ((issued_to IS NULL) = (issued_micros IS NULL))
) STRICT;
