-- The lowest event id the database's current timeline may number events
-- above: (timeline - 1) << 42. A promoted standby (or a point-in-time
-- restore) starts a new timeline, so its first event id is above every id
-- the old timeline could have answered, even one whose write an
-- asynchronous primary lost. 0 on the first timeline, on a standby, and
-- wherever the server does not expose its WAL position (then ids go on
-- from the log's head, as before).
CREATE OR REPLACE FUNCTION switchboard_timeline_floor() RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN 0;
    END IF;
    RETURN ((('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint - 1) << 42);
EXCEPTION WHEN OTHERS THEN
    RETURN 0;
END
$$;
