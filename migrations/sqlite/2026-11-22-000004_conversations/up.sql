-- Conversations and their messages. A deleted conversation stays as a
-- tombstone for the sync endpoints; its messages go.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    last_event_id BIGINT NOT NULL
);
CREATE INDEX conversations_event ON conversations (last_event_id);
CREATE INDEX conversations_updated ON conversations (updated_at);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    -- Position in the conversation: 1, 2, 3…
    seq BIGINT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    -- Length of content in UTF-16 code units (what a browser's String.length
    -- counts): the offset of the next delta.
    content_units BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('streaming', 'complete')),
    input_tokens BIGINT,
    output_tokens BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq);
