-- The telemetry snapshot (docs/api.md "Telemetry"): what a deployment does, without what its users
-- wrote or who they are. No title, message content, URL, label, email or name is selected here,
-- and test/server/telemetry.test.ts searches the snapshot for planted ones.

-- name: ListTelemetryChats :many
-- Chats created in [since, until), oldest first, at most page_limit (chats_created_at_idx).
SELECT c.id, c.status, c.mode, c.archived, c.parent_chat_id IS NOT NULL AS has_parent,
  COALESCE(c.root_chat_id, c.id) AS root_chat_id, c.last_model_config_id,
  c.workspace_id IS NOT NULL AS workspace_bound, c.created_at
FROM chats c
WHERE c.created_at >= @since AND c.created_at < @until
ORDER BY c.created_at, c.id
LIMIT @page_limit;

-- name: ListTelemetryMessageSummaries :many
-- Per chat of the list: messages by role, token sums by type, cost, runtime and the number of
-- models that answered (chat_messages_chat_id_idx per chat).
SELECT m.chat_id,
  count(*) FILTER (WHERE m.role = 'user') AS user_messages,
  count(*) FILTER (WHERE m.role = 'assistant') AS assistant_messages,
  count(*) FILTER (WHERE m.role = 'tool') AS tool_messages,
  count(*) FILTER (WHERE m.role = 'system') AS system_messages,
  COALESCE(sum(m.input_tokens), 0)::bigint AS input_tokens,
  COALESCE(sum(m.output_tokens), 0)::bigint AS output_tokens,
  COALESCE(sum(m.reasoning_tokens), 0)::bigint AS reasoning_tokens,
  COALESCE(sum(m.cache_read_tokens), 0)::bigint AS cache_read_tokens,
  COALESCE(sum(m.cache_creation_tokens), 0)::bigint AS cache_creation_tokens,
  COALESCE(sum(m.total_cost_micros), 0)::bigint AS total_cost_micros,
  COALESCE(sum(m.runtime_ms), 0)::bigint AS runtime_ms,
  count(DISTINCT m.model_config_id) AS model_count
FROM chat_messages m
WHERE m.chat_id = ANY (@chat_ids::uuid[])
GROUP BY m.chat_id
ORDER BY m.chat_id;

-- name: ListTelemetryModelConfigs :many
SELECT m.id, p.provider, m.model, m.context_limit, m.enabled, m.is_default
FROM chat_model_configs m
JOIN chat_providers p ON p.id = m.provider_id
WHERE NOT m.deleted
ORDER BY m.created_at, m.id;
