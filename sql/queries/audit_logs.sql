-- name: ListAuditLogsByChatID :many
-- GET /{chat}/audit: one page of a chat's audit entries for its owner, newest first, continuing
-- below after_id (keyset); one row more than the page tells whether there is more. Another
-- owner's chat gives no rows (the route then tells "not found" from "no entries").
-- audit_logs_chat_id_idx in order: no sort.
SELECT a.id, a.time, a.action, a.actor_user_id, a.actor_agent_id, a.api_key_id, a.chat_id,
  a.agent_id, a.detail
FROM audit_logs a
WHERE a.chat_id = @chat_id
  AND EXISTS (SELECT 1 FROM chats c WHERE c.id = @chat_id AND c.owner_id = @owner_id)
  AND (sqlc.narg(after_id)::bigint IS NULL OR a.id < sqlc.narg(after_id)::bigint)
ORDER BY a.id DESC
LIMIT @page_limit;

-- name: ListAuditLogs :many
-- GET /audit (site owners): the deployment's audit log, newest first, keyset by after_id,
-- optionally one API key's entries (audit_logs_api_key_id_idx) or one chat's
-- (audit_logs_chat_id_idx); unfiltered, the primary key in order. Planned per call (unnamed
-- statements), so the absent filters fold away.
SELECT a.id, a.time, a.action, a.actor_user_id, a.actor_agent_id, a.api_key_id, a.chat_id,
  a.agent_id, a.detail
FROM audit_logs a
WHERE (sqlc.narg(api_key_id)::text IS NULL OR a.api_key_id = sqlc.narg(api_key_id)::text)
  AND (sqlc.narg(chat_id)::uuid IS NULL OR a.chat_id = sqlc.narg(chat_id)::uuid)
  AND (sqlc.narg(after_id)::bigint IS NULL OR a.id < sqlc.narg(after_id)::bigint)
ORDER BY a.id DESC
LIMIT @page_limit;
