-- postgres-migrations disable-transaction
-- A chat's live context-file messages (chat_context_files_clear, and chat_create copying a
-- parent's to a child): the predicate is exactly those queries' filter, so they read these few
-- rows whatever the length of the chat's history, instead of every message's JSON.
CREATE INDEX CONCURRENTLY chat_messages_context_files_idx ON chat_messages (chat_id, id)
  WHERE NOT deleted AND jsonb_typeof(content) = 'array' AND content @> '[{"type": "context-file"}]';
