-- name: InsertChatMessage :one
-- The chat_messages triggers reject archived chats and move updated_at for user messages.
INSERT INTO chat_messages (chat_id, role, content, visibility, model_config_id, created_by, api_key_id)
VALUES (
  @chat_id, @role, @content, @visibility, sqlc.narg(model_config_id), sqlc.narg(created_by),
  sqlc.narg(api_key_id)
)
RETURNING id, chat_id, created_at, role, content, visibility, model_config_id, created_by;

-- name: GetChatMessageByID :one
SELECT id, chat_id, created_at, role, content, model_config_id, created_by, input_tokens,
  output_tokens, total_tokens, reasoning_tokens, cache_creation_tokens, cache_read_tokens,
  context_limit, total_cost_micros, runtime_ms
FROM chat_messages
WHERE id = @id AND chat_id = @chat_id;

-- name: ListChatMessagesByChatID :many
-- A history page, newest first: messages users see (not deleted, not model-only), optionally
-- before and/or after an id. The route asks for one more than the page to know has_more.
SELECT id, chat_id, created_at, role, content, model_config_id, created_by, input_tokens,
  output_tokens, total_tokens, reasoning_tokens, cache_creation_tokens, cache_read_tokens,
  context_limit, total_cost_micros, runtime_ms
FROM chat_messages
WHERE chat_id = @chat_id AND NOT deleted AND visibility <> 'model'
  AND (sqlc.narg(before_id)::bigint IS NULL OR id < sqlc.narg(before_id)::bigint)
  AND (sqlc.narg(after_id)::bigint IS NULL OR id > sqlc.narg(after_id)::bigint)
ORDER BY id DESC
LIMIT @page_limit;

-- name: ListChatPromptsByChatID :many
-- The prompt history, newest first: chat_prompts holds each user-visible user message's joined
-- text, written with the message (chat_messages__sync_prompt), so this reads one index range.
SELECT message_id AS id, text
FROM chat_prompts
WHERE chat_id = @chat_id
ORDER BY message_id DESC
LIMIT @page_limit;

-- name: SendChatMessage :one
-- chat_send_message: admitted now, or queued (FIFO) while the chat is busy; see
-- sql/functions/chat_messages.sql.
SELECT s.message_id, s.queued_message_id
FROM chat_send_message(
  @chat_id, @owner_id, @content, sqlc.narg(model_config_id), @busy_behavior, sqlc.narg(api_key_id)
) AS s;

-- name: EditChatMessage :one
SELECT e.message_id, e.deleted_message_ids
FROM chat_edit_message(
  @chat_id, @owner_id, @message_id, @content, sqlc.narg(api_key_id), sqlc.narg(model_config_id)
) AS e;

-- name: SubmitChatToolResults :one
SELECT chat_submit_tool_results(@chat_id, @owner_id, @results, sqlc.narg(api_key_id)) AS message_id;

-- name: InterruptChat :exec
SELECT chat_interrupt(@chat_id, @owner_id);

-- name: ListChatMessagesByIDs :many
-- Change events: the messages a batch of `message` events names.
SELECT id, chat_id, created_at, role, content, model_config_id, created_by, input_tokens,
  output_tokens, total_tokens, reasoning_tokens, cache_creation_tokens, cache_read_tokens,
  context_limit, total_cost_micros, runtime_ms
FROM chat_messages
WHERE id = ANY(@ids::bigint[]);

-- name: ListChatMessagesAfterIDByChatID :many
-- A chat stream's snapshot: the messages users see after an id, oldest first, one page at a time.
SELECT id, chat_id, created_at, role, content, model_config_id, created_by, input_tokens,
  output_tokens, total_tokens, reasoning_tokens, cache_creation_tokens, cache_read_tokens,
  context_limit, total_cost_micros, runtime_ms
FROM chat_messages
WHERE chat_id = @chat_id AND NOT deleted AND visibility <> 'model' AND id > @after_id
ORDER BY id
LIMIT @page_limit;

-- name: ListChatMessagesForPromptByChatID :many
-- A turn's history: what the model sees (not deleted, not user-only), in order.
SELECT id, role, content
FROM chat_messages
WHERE chat_id = @chat_id AND NOT deleted AND visibility <> 'user'
ORDER BY id;

-- name: GetChatResponseAnchorByChatID :one
-- Response chaining (src/runner/turn.ts): the newest assistant message the model sees, the
-- provider response it came from and that provider, and whether a message was deleted since
-- that turn could have read the history (an edit, or a context-file clear anywhere in it, rewrote
-- what the stored response holds). The turn read it after the message a user sent that started it,
-- so any deletion since that message counts (conservative: at worst a turn replays once). Read
-- backwards through chat_messages_chat_id_idx; the check reads chat_messages_deleted_at_idx, which
-- holds deleted rows only.
SELECT m.id, m.provider_response_id, mc.provider_id,
  EXISTS (
    SELECT 1 FROM chat_messages d
    WHERE d.chat_id = m.chat_id AND d.deleted_at IS NOT NULL
      AND d.deleted_at >= COALESCE(
        (SELECT u.created_at FROM chat_messages u
         WHERE u.chat_id = m.chat_id AND u.id < m.id AND u.created_by IS NOT NULL
         ORDER BY u.id DESC LIMIT 1),
        m.created_at)
  ) AS edited_after
FROM chat_messages m
LEFT JOIN chat_model_configs mc ON mc.id = m.model_config_id
WHERE m.chat_id = @chat_id AND m.role = 'assistant' AND NOT m.deleted AND m.visibility <> 'user'
ORDER BY m.id DESC
LIMIT 1;

-- name: ListChatTitleTurnMessagesByChatID :many
-- Title regeneration: the user and assistant messages of the first turn and of the last three
-- (a turn starts at a user message), oldest first, and how many turns the chat has.
WITH starts AS (
  SELECT id FROM chat_messages
  WHERE chat_id = @chat_id AND role = 'user' AND NOT deleted AND visibility <> 'model'
),
bounds AS (
  SELECT
    (SELECT min(id) FROM starts) AS first_start,
    (SELECT min(s.id) FROM starts s WHERE s.id > (SELECT min(id) FROM starts)) AS second_start,
    (SELECT min(l.id) FROM (SELECT id FROM starts ORDER BY id DESC LIMIT 3) l) AS last_start,
    (SELECT count(*) FROM starts) AS turns
)
SELECT m.id, m.role, m.content, b.turns
FROM chat_messages m
CROSS JOIN bounds b
WHERE m.chat_id = @chat_id AND NOT m.deleted AND m.visibility <> 'model'
  AND m.role IN ('user', 'assistant')
  AND (
    (m.id >= b.first_start AND (b.second_start IS NULL OR m.id < b.second_start))
    OR m.id >= b.last_start
  )
ORDER BY m.id;

-- name: GetChatPendingToolCallsByChatID :one
-- A chat stream's snapshot of a chat in requires_action: the calls waiting for the client, as
-- the action_required event shows them (chat_events_tool_calls).
SELECT chat_events_tool_calls(@chat_id) AS tool_calls;

-- name: GetChatLastUserMessageByChatID :one
-- The AI SDK endpoint (src/server/ai_sdk.ts): the newest user message users see, which the
-- current turn answers (a resume replays what came after it; a regenerate re-sends it). Read
-- backwards through chat_messages_chat_id_idx, skipping the turn's own assistant and tool rows.
SELECT id, content
FROM chat_messages
WHERE chat_id = @chat_id AND role = 'user' AND NOT deleted AND visibility <> 'model'
ORDER BY id DESC
LIMIT 1;
