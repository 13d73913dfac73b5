-- name: PushWorkspaceAgentContext :one
-- PUT /workspaceagents/me/context: workspace_agent_context_push (sql/functions/chat_context.sql)
-- stores the snapshot and marks the bound chats dirty in the same transaction, in one statement.
SELECT p.pushed_hash AS aggregate_hash, p.marked_dirty
FROM workspace_agent_context_push(@agent_id, @resources, sqlc.narg(error)::text) AS p;

-- name: RepinChatContextByID :exec
-- PUT /{chat}/context: chat_context_repin (sql/functions/chat_context.sql).
SELECT chat_context_repin(@chat_id, @owner_id);

-- name: PrepareChatRunContextByID :exec
-- Before a turn of a chat bound to a workspace: re-bind to a newer build, hydrate unpinned context.
SELECT chat_run_prepare_context(@chat_id);

-- name: ListChatContextResourcesForPromptByChatID :many
-- A turn's pinned context: the readable instruction files and skills (MCP config is not prompt
-- text), instruction files first, each kind by source.
SELECT source, kind, body
FROM chat_context_resources
WHERE chat_id = @chat_id AND status = 'ok' AND kind IN ('instruction_file', 'skill')
ORDER BY kind, source;

-- name: AddChatContextFiles :one
-- POST /workspaceagents/me/chat-context: chat_context_files_add.
SELECT a.chat_id, a.added
FROM chat_context_files_add(@agent_id, sqlc.narg(chat_id)::uuid, @files) AS a;

-- name: ClearChatContextFiles :one
-- DELETE /workspaceagents/me/chat-context: chat_context_files_clear.
SELECT r.chat_id, r.removed
FROM chat_context_files_clear(@agent_id, sqlc.narg(chat_id)::uuid) AS r;
