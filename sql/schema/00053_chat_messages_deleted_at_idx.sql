-- postgres-migrations disable-transaction
-- Response chaining's check (GetChatResponseAnchorByChatID): was a message of this chat deleted
-- after the stored response? Only deleted rows, so the index stays small.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_messages_deleted_at_idx
  ON chat_messages (chat_id, deleted_at) WHERE deleted_at IS NOT NULL;
