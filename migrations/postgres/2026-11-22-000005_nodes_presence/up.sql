-- Nodes sharing this database (PostgreSQL only: SQLite has one server).
-- Each node refreshes its heartbeat every few seconds; a node whose heartbeat
-- is older than the node timeout is gone (crashed or cut off), and any node
-- removes it and its sessions.
CREATE TABLE nodes (
    node_id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    heartbeat_at TEXT COLLATE "C" NOT NULL
);

-- Sessions with at least one open stream, per node. A session is present
-- while it has a row on any node: it joins with its first row and leaves
-- with its last.
CREATE TABLE presence (
    node_id TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    agent_id TEXT COLLATE "C" NOT NULL,
    connections BIGINT NOT NULL,
    -- A JSON array of the channel patterns the session's streams follow.
    channels TEXT NOT NULL,
    connected_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (node_id, session_id)
);
CREATE INDEX presence_session ON presence (session_id);
