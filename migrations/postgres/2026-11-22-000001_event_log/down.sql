DROP TABLE idempotency_keys;
DROP TABLE log_state;
DROP TABLE events;
