-- chat_bind_workspace is the one body of a binding (a PATCH's and a turn's re-binding to a newer
-- build) and takes the audit actor and whether to hydrate an unpinned chat: its old signature goes.
DROP FUNCTION IF EXISTS chat_bind_workspace(uuid, uuid, uuid, uuid);
