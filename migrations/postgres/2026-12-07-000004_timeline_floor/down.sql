DROP FUNCTION switchboard_timeline_floor();
