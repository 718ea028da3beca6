-- Subscriptions on channels (/api/subscriptions/{id}): events after the
-- acked cursor that match the channel patterns (and event types) are POSTed
-- to a webhook, or claimed in ranges by pull workers. The delivery state
-- (consecutive failures, the next attempt, the node delivering now and
-- until when) lives here so that a restart or another node goes on where
-- the last one stopped.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    channels TEXT NOT NULL,
    types TEXT,
    webhook_url TEXT,
    description TEXT,
    batch_size BIGINT NOT NULL,
    lease_ms BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    acked_through BIGINT NOT NULL,
    claimed_through BIGINT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    last_success_at TEXT,
    deliverer TEXT,
    deliverer_until_ms BIGINT
);
-- A pull subscription's outstanding claims: the range of event ids handed to
-- one worker until it acks, releases, or its lease ends.
CREATE TABLE subscription_claims (
    id TEXT PRIMARY KEY NOT NULL,
    subscription_id TEXT NOT NULL,
    first_id BIGINT NOT NULL,
    last_id BIGINT NOT NULL,
    size BIGINT NOT NULL,
    worker TEXT,
    lease_expires_ms BIGINT NOT NULL
);
CREATE INDEX subscription_claims_by_subscription ON subscription_claims (subscription_id, first_id);
