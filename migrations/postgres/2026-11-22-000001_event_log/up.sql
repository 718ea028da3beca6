-- The event log on PostgreSQL. Text columns use the "C" collation so that
-- comparisons are byte order, as on SQLite (channel prefix ranges, RFC 3339
-- timestamps, list order by id).
--
-- Ids come from a sequence. A sequence value is taken outside transactions,
-- so on its own ids could commit out of order; every write transaction of
-- every node first takes the advisory lock 7_346_201 (see docs/scale-out.md),
-- which makes ids become visible in id order.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT COLLATE "C" NOT NULL,
    event_type TEXT COLLATE "C" NOT NULL,
    resource_type TEXT COLLATE "C",
    resource_id TEXT COLLATE "C",
    agent_id TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C",
    created_at TEXT COLLATE "C" NOT NULL,
    payload TEXT NOT NULL
);

CREATE INDEX events_channel_id ON events (channel, id);
CREATE INDEX events_resource_id ON events (resource_id, id) WHERE resource_id IS NOT NULL;
CREATE INDEX events_created_at ON events (created_at);

CREATE TABLE log_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    pruned_through BIGINT NOT NULL DEFAULT 0
);
INSERT INTO log_state (singleton, pruned_through) VALUES (1, 0);

CREATE TABLE idempotency_keys (
    agent_id TEXT COLLATE "C" NOT NULL,
    idem_key TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    status INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (agent_id, idem_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
