-- postgres-migrations disable-transaction
-- Retention: archived chats, least recently updated first (chat_retention_candidates,
-- sql/functions/chat_housekeeping.sql). Built concurrently: writes go on while it builds.
CREATE INDEX CONCURRENTLY chats_archived_updated_at_idx ON chats (updated_at, id) WHERE archived;
