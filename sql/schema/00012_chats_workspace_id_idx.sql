-- postgres-migrations disable-transaction
-- The foreign key from workspaces (a deleted workspace unbinds its chats, archived ones and
-- children too, which chats_workspace_latest_idx does not hold).
CREATE INDEX CONCURRENTLY chats_workspace_id_idx ON chats (workspace_id) WHERE workspace_id IS NOT NULL;
