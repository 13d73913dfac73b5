-- postgres-migrations disable-transaction
-- Auto-archive: the roots that may be idle, least recently updated first
-- (chat_auto_archive_candidates, sql/functions/chat_housekeeping.sql). Built concurrently: writes
-- go on while it builds.
CREATE INDEX CONCURRENTLY chats_auto_archive_idx ON chats (updated_at, id)
  WHERE parent_chat_id IS NULL AND NOT archived AND pin_order = 0;
