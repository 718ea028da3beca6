-- A lease's own length, so that a renewal that names none keeps it.
ALTER TABLE files ADD COLUMN lock_ttl_seconds BIGINT;
