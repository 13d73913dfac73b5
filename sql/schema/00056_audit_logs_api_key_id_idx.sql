-- postgres-migrations disable-transaction
-- GET /api/experimental/chats/audit?api_key_id= (ListAuditLogs): what one key did, newest first,
-- for a key that leaked. Only entries made with a key, so the index skips everything else.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_logs_api_key_id_idx
  ON audit_logs (api_key_id, id) WHERE api_key_id IS NOT NULL;
