-- name: PushWorkspaceAgentContext :one
-- workspace_agent_context_push (sql/functions/chat_context.sql): stores the snapshot; its trigger
-- marks the bound chats dirty in the same transaction, in one statement.
SELECT p.pushed_hash AS aggregate_hash, p.marked_dirty
FROM workspace_agent_context_push(@agent_id, @resources, sqlc.narg(error)::text) AS p;
