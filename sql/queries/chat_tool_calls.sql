-- Workspace tool calls, the agent's side (docs/api.md "Workspace tools"); the rules are in
-- sql/functions/chat_tool_calls.sql, the runner's side in sql/queries/chat_runs.sql.

-- name: StartWorkspaceAgentSession :one
-- A new agent process (workspace_agent_session_start): it replaces the previous one.
SELECT s.session_id, s.interrupted FROM workspace_agent_session_start(@agent_id) AS s;

-- name: TouchWorkspaceAgentStream :execrows
-- The agent's stream, when it opens and at every keep-alive: the agent is online. No row: the
-- session is no longer the agent's current one (a newer process started), and the stream ends.
UPDATE workspace_agent_sessions SET stream_id = @stream_id, last_seen_at = now()
WHERE agent_id = @agent_id AND session_id = @session_id;

-- name: ReleaseWorkspaceAgentStream :exec
-- The agent's stream closed: offline now (last_seen_at says since when), unless a newer
-- connection of the agent took over.
UPDATE workspace_agent_sessions SET stream_id = NULL
WHERE agent_id = @agent_id AND stream_id = @stream_id;

-- name: ListPendingChatToolCallsByAgentID :many
-- The stream's snapshot: the calls waiting for this agent to start them, oldest first, a page
-- after @after_id (chat_tool_calls_agent_idx).
SELECT id, chat_id, tool_call_id, tool_name, args, state, created_at, deadline_at
FROM chat_tool_calls
WHERE agent_id = @agent_id AND state = 'pending' AND id > @after_id
ORDER BY id
LIMIT @page_limit;

-- name: ListChatToolCallsByIDs :many
-- Rendering tool_call and tool_call_canceled events: the calls they name, as they are now.
SELECT id, chat_id, agent_id, tool_call_id, tool_name, args, state, result, created_at,
  deadline_at
FROM chat_tool_calls
WHERE id = ANY (@ids::bigint[]);

-- name: StartChatToolCallByID :one
-- chat_tool_call_start: see sql/functions/chat_tool_calls.sql.
SELECT t.id, t.chat_id, t.tool_call_id, t.tool_name, t.args, t.deadline_at
FROM chat_tool_call_start(@agent_id, @session_id, @id) AS t;

-- name: GetRunningChatToolCallByID :one
-- A progress report of the agent (chat_tool_call_require_running): the call and its chat's owner,
-- for the chat stream the progress goes to.
SELECT t.id, t.chat_id, c.owner_id, t.tool_call_id, t.tool_name
FROM chat_tool_call_require_running(@agent_id, @session_id, @id) AS t
JOIN chats c ON c.id = t.chat_id;

-- name: CompleteChatToolCallByID :one
-- chat_tool_call_complete: see sql/functions/chat_tool_calls.sql.
SELECT t.id, t.chat_id, t.state
FROM chat_tool_call_complete(@agent_id, @session_id, @id, @result, @is_error) AS t;
