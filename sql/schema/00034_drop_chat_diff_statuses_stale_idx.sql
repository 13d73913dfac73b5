-- postgres-migrations disable-transaction
-- 00033's index serves the claim now; this one held archived chats' references, stale forever.
-- Dropped concurrently: it waits for the queries using it instead of blocking the table.
DROP INDEX CONCURRENTLY chat_diff_statuses_stale_idx;
