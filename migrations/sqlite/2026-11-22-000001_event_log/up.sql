-- The event log: ids are never reused (AUTOINCREMENT keeps the highest id in
-- sqlite_sequence even after every row below it was pruned).
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    event_type TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    agent_id TEXT NOT NULL,
    session_id TEXT,
    created_at TEXT NOT NULL,
    payload TEXT NOT NULL
);

-- Streams and history filtered by channel read `channel = ? AND id > ?` ranges.
CREATE INDEX events_channel_id ON events (channel, id);
-- History and snapshots filtered by resource.
CREATE INDEX events_resource_id ON events (resource_id, id) WHERE resource_id IS NOT NULL;
-- Retention deletes the oldest rows by time.
CREATE INDEX events_created_at ON events (created_at);

-- One row of counters about the log itself. `pruned_through` is the highest id
-- that retention may have deleted: a cursor below it cannot be resumed exactly.
CREATE TABLE log_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    pruned_through BIGINT NOT NULL DEFAULT 0
);
INSERT INTO log_state (singleton, pruned_through) VALUES (1, 0);

-- First responses to POSTs sent with an Idempotency-Key, kept 24 hours.
CREATE TABLE idempotency_keys (
    agent_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (agent_id, idem_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
