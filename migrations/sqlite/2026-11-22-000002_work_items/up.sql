-- Features, tracks and spikes share one table: their ids are unique across the
-- three collections, so a link names its target without ambiguity.
CREATE TABLE work_items (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('feature', 'track', 'spike')),
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT,
    priority TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    track_id TEXT,
    findings TEXT,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    -- A deleted item stays as a tombstone so /api/sync can report it.
    deleted BOOLEAN NOT NULL DEFAULT 0,
    -- The id of the newest event about this item: /api/sync?cursor=N returns
    -- the items whose last_event_id is above N.
    last_event_id BIGINT NOT NULL
);
CREATE INDEX work_items_kind_event ON work_items (kind, last_event_id);

CREATE TABLE work_item_links (
    item_id TEXT NOT NULL REFERENCES work_items (id),
    linked_id TEXT NOT NULL,
    link_type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (item_id, linked_id, link_type)
);

CREATE TABLE work_item_comments (
    id TEXT PRIMARY KEY NOT NULL,
    item_id TEXT NOT NULL REFERENCES work_items (id),
    comment_text TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX work_item_comments_item ON work_item_comments (item_id, created_at);
