-- postgres-migrations disable-transaction
-- The foreign key from users: a deleted user is removed from the messages they wrote (SET NULL).
-- Partial: assistant and tool messages have no author. chat_messages is the largest table, so
-- CONCURRENTLY (a plain build would block every message write while it runs).
CREATE INDEX CONCURRENTLY chat_messages_created_by_idx ON chat_messages (created_by)
  WHERE created_by IS NOT NULL;
