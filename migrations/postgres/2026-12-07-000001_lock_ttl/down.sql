ALTER TABLE files DROP COLUMN lock_ttl_seconds;
