-- no-transaction
-- GetUserPresence reads a user's last 20 login_history rows, newest first.
-- login_history_user_event_time has the event between the user and the time,
-- so it cannot give one user's rows in time order: PostgreSQL either sorts all
-- of that user's rows or walks login_history_by_time backwards past everyone
-- else's (300 ms at 340,000 rows for a user whose rows are old; see
-- docs/benchmarks.md). This index reads just the 20 rows. Built without
-- blocking the sign-ins that write to the table meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS login_history_by_user
    ON login_history (user_id, occurred_at DESC, id DESC)
    WHERE user_id IS NOT NULL;
