-- Mercure update ids (the SSE ids publishers choose or the hub makes) and
-- the event each one is stored as: Last-Event-ID resumes from there.
CREATE TABLE mercure_updates (
    update_id TEXT PRIMARY KEY NOT NULL,
    event_id BIGINT NOT NULL
);
CREATE INDEX mercure_updates_event_id ON mercure_updates (event_id);
