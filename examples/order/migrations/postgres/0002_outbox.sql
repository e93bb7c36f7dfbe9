-- The transactional outbox (truss::queue::QUEUE_TABLES): `order.created` events are written
-- in the transaction that writes the order, and consumed from here (truss::queue::SqlQueue).
CREATE TABLE IF NOT EXISTS truss_queue (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    seq BIGINT NOT NULL,
    payload TEXT NOT NULL,
    headers TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    available_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT
);
CREATE TABLE IF NOT EXISTS truss_queue_dead (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    headers TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    reason TEXT NOT NULL
);
