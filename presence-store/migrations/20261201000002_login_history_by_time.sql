-- no-transaction
-- The retention purge deletes the oldest login_history rows in small batches;
-- this index finds them without reading the table. Built without blocking the
-- sign-ins that write to the table meanwhile (hence outside a transaction).
CREATE INDEX CONCURRENTLY IF NOT EXISTS login_history_by_time ON login_history (occurred_at);
