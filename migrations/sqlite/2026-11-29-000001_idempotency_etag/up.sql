-- The ETag of a stored answer, so that a replay carries it without reading the body back.
ALTER TABLE idempotency_keys ADD COLUMN etag TEXT;
