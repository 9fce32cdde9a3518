-- Welcomes a hub committed to (with the add, in the same transaction) and has not yet
-- delivered: redelivered until the new member takes it, dropped when it is removed.
-- A Welcome is encrypted to the new member's KeyPackage; only that member can open it.
CREATE TABLE circle_welcomes (
    circle TEXT NOT NULL,
    member TEXT NOT NULL,
    position INTEGER NOT NULL CHECK (position > 0),
    welcome BLOB NOT NULL,
    created_micros INTEGER NOT NULL,
    PRIMARY KEY (circle, member)
) STRICT;
