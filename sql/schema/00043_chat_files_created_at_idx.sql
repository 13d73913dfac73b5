-- postgres-migrations disable-transaction
-- Retention: files oldest first, to delete those no chat links to (chat_retention_purge_files,
-- sql/functions/chat_housekeeping.sql). Built concurrently: uploads go on while it builds.
CREATE INDEX CONCURRENTLY chat_files_created_at_idx ON chat_files (created_at);
