-- Features, tracks and spikes share one table: their ids are unique across the
-- three collections, so a link names its target without ambiguity.
CREATE TABLE work_items (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('feature', 'track', 'spike')),
    title TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C",
    priority TEXT COLLATE "C",
    tags TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    track_id TEXT COLLATE "C",
    findings TEXT COLLATE "C",
    version BIGINT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    -- A deleted item stays as a tombstone so /api/sync can report it.
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    -- The id of the newest event about this item: /api/sync?cursor=N returns
    -- the items whose last_event_id is above N.
    last_event_id BIGINT NOT NULL
);
CREATE INDEX work_items_kind_event ON work_items (kind, last_event_id);

CREATE TABLE work_item_links (
    item_id TEXT COLLATE "C" NOT NULL REFERENCES work_items (id),
    linked_id TEXT COLLATE "C" NOT NULL,
    link_type TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (item_id, linked_id, link_type)
);

CREATE TABLE work_item_comments (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    item_id TEXT COLLATE "C" NOT NULL REFERENCES work_items (id),
    comment_text TEXT COLLATE "C" NOT NULL,
    author TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX work_item_comments_item ON work_item_comments (item_id, created_at);
