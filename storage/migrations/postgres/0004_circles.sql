-- Circles: MLS groups (RFC 9420) through which members share source-protected
-- indicators, with the hub's log of each circle's messages and the KeyPackages
-- this gateway offers to be added with.

-- The circle a source-protected indicator was published or received in, NULL
-- for an indicator of the feed at large.
ALTER TABLE indicators ADD COLUMN circle TEXT;

-- The openmls key-value storage: opaque keys and values, among them the group
-- secrets. A deleted value stays in the table's file until VACUUM reclaims the
-- dead tuple (see Store::checkpoint).
CREATE TABLE mls_kv (
    key BYTEA PRIMARY KEY,
    value BYTEA NOT NULL
);

-- One row per circle this gateway is the hub or a member of. position: at the
-- hub, the number of entries in the circle's log; at a member, the number of
-- log entries it has consumed. name is compared bytewise (COLLATE "C"), as
-- SQLite does, so the listing order is the same on both backends.
CREATE TABLE circles (
    name TEXT COLLATE "C" PRIMARY KEY,
    group_id BYTEA NOT NULL,
    hub TEXT NOT NULL,
    epoch BIGINT NOT NULL CHECK (epoch >= 0),
    position BIGINT NOT NULL CHECK (position >= 0),
    status TEXT NOT NULL CHECK (status IN ('active', 'removed')),
    created_micros BIGINT NOT NULL
);

-- The hub's log of each circle: the MLS messages in the order the hub accepted
-- them, positions from 1 without gaps. The primary key refuses a second entry
-- at a position, so two commits racing for one epoch cannot both be logged.
CREATE TABLE circle_log (
    circle TEXT NOT NULL,
    position BIGINT NOT NULL CHECK (position > 0),
    epoch BIGINT NOT NULL CHECK (epoch >= 0),
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    message BYTEA NOT NULL,
    at_micros BIGINT NOT NULL,
    PRIMARY KEY (circle, position)
);

-- A member removed from a circle may still read its log up to last_position,
-- the commit that removed it.
CREATE TABLE circle_departures (
    circle TEXT NOT NULL,
    member TEXT NOT NULL,
    last_position BIGINT NOT NULL CHECK (last_position >= 0),
    PRIMARY KEY (circle, member)
);

-- The KeyPackages this gateway published (their private keys are in mls_kv),
-- and to whom each was last handed out. A last-resort one may be handed out
-- again.
CREATE TABLE circle_key_packages (
    hash_ref BYTEA PRIMARY KEY,
    key_package BYTEA NOT NULL,
    last_resort BOOLEAN NOT NULL,
    issued_to TEXT,
    issued_micros BIGINT,
    created_micros BIGINT NOT NULL,
    CHECK ((issued_to IS NULL) = (issued_micros IS NULL))
);
