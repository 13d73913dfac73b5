-- postgres-migrations disable-transaction
-- Deleting a workspace build sets its chats' build_id to NULL: without this index every such
-- delete scans chats. Partial: most chats are bound to no build. CONCURRENTLY: chats is large and
-- written all the time; a plain CREATE INDEX would block every write while it builds.
CREATE INDEX CONCURRENTLY chats_build_id_idx ON chats (build_id) WHERE build_id IS NOT NULL;
