-- Welcomes a hub committed to (with the add, in the same transaction) and has not yet
-- delivered: redelivered until the new member takes it, dropped when it is removed.
-- A Welcome is encrypted to the new member's KeyPackage; only that member can open it.
CREATE TABLE circle_welcomes (
    circle TEXT NOT NULL,
    member TEXT NOT NULL,
    position BIGINT NOT NULL CHECK (position > 0),
    welcome BYTEA NOT NULL,
    created_micros BIGINT NOT NULL,
    PRIMARY KEY (circle, member)
);

-- A member's own indicators sent to the hub, kept (in the transaction that moved its
-- sender ratchet) until the hub's answer or the hub's log shows what became of them: the
-- originator stores each one the circle holds, even if it crashed before the hub answered.
CREATE TABLE circle_outbox (
    circle TEXT NOT NULL,
    -- SHA-256 of the MLS message sent.
    digest BYTEA NOT NULL,
    -- The signed indicator (protobuf).
    indicator BYTEA NOT NULL,
    created_micros BIGINT NOT NULL,
    PRIMARY KEY (circle, digest)
);

-- The log position of the commit that last added each member: a member reads the hub's log
-- only after it (and, once removed, only up to its departure).
CREATE TABLE circle_admissions (
    circle TEXT NOT NULL,
    member TEXT NOT NULL,
    position BIGINT NOT NULL CHECK (position > 0),
    PRIMARY KEY (circle, member)
);
