-- name: ListChatCostSummaryByOwner :many
-- GET /cost/{user}/summary: one owner's cost in [start_date, end_date) as three groupings of one
-- scan (chat_cost_rows, sql/functions/chat_costs.sql): kind 'total' (one row, also for no cost),
-- 'model' (by model config, with its names) and 'chat' (by root chat: subagents roll up to their
-- root), each most expensive first.
WITH grouped AS (
  SELECT
    CASE
      WHEN GROUPING(r.model_config_id) = 0 THEN 'model'
      WHEN GROUPING(r.root_chat_id) = 0 THEN 'chat'
      ELSE 'total'
    END AS kind,
    r.model_config_id, r.root_chat_id,
    sum(r.total_cost_micros)::bigint AS total_cost_micros,
    sum(r.priced_message_count)::bigint AS priced_message_count,
    sum(r.unpriced_message_count)::bigint AS unpriced_message_count,
    sum(r.input_tokens)::bigint AS total_input_tokens,
    sum(r.output_tokens)::bigint AS total_output_tokens,
    sum(r.cache_read_tokens)::bigint AS total_cache_read_tokens,
    sum(r.cache_creation_tokens)::bigint AS total_cache_creation_tokens,
    sum(r.runtime_ms)::bigint AS total_runtime_ms
  FROM chat_cost_rows(@start_date, @end_date) r
  WHERE r.owner_id = @owner_id
  GROUP BY GROUPING SETS ((), (r.model_config_id), (r.root_chat_id))
)
SELECT g.kind, g.model_config_id, g.root_chat_id,
  COALESCE(NULLIF(mc.display_name, ''), mc.model, '') AS display_name,
  COALESCE(p.provider::text, '') AS provider, COALESCE(mc.model, '') AS model,
  COALESCE(ch.title, '') AS chat_title,
  COALESCE(g.total_cost_micros, 0)::bigint AS total_cost_micros,
  COALESCE(g.priced_message_count, 0)::bigint AS priced_message_count,
  COALESCE(g.unpriced_message_count, 0)::bigint AS unpriced_message_count,
  COALESCE(g.total_input_tokens, 0)::bigint AS total_input_tokens,
  COALESCE(g.total_output_tokens, 0)::bigint AS total_output_tokens,
  COALESCE(g.total_cache_read_tokens, 0)::bigint AS total_cache_read_tokens,
  COALESCE(g.total_cache_creation_tokens, 0)::bigint AS total_cache_creation_tokens,
  COALESCE(g.total_runtime_ms, 0)::bigint AS total_runtime_ms
FROM grouped g
LEFT JOIN chat_model_configs mc ON g.kind = 'model' AND mc.id = g.model_config_id
LEFT JOIN chat_providers p ON p.id = mc.provider_id
LEFT JOIN chats ch ON g.kind = 'chat' AND ch.id = g.root_chat_id
ORDER BY g.kind, g.total_cost_micros DESC, g.model_config_id, g.root_chat_id;

-- name: ListChatCostByUser :many
-- GET /cost/users (site owners): every user with assistant messages in [start_date, end_date),
-- most expensive first, filtered by a case-insensitive substring of username or name ('' for
-- all). total_count counts the filtered users; the first row always comes back (with a NULL
-- user_id when the page is empty), so the count survives a page past the end.
-- Two hash aggregations, by root chat and then by user, instead of count(DISTINCT), which sorts.
WITH per_root AS (
  SELECT r.owner_id, r.root_chat_id,
    sum(r.total_cost_micros) AS total_cost_micros,
    sum(r.priced_message_count + r.unpriced_message_count) AS message_count,
    sum(r.input_tokens) AS total_input_tokens,
    sum(r.output_tokens) AS total_output_tokens,
    sum(r.cache_read_tokens) AS total_cache_read_tokens,
    sum(r.cache_creation_tokens) AS total_cache_creation_tokens,
    sum(r.runtime_ms) AS total_runtime_ms
  FROM chat_cost_rows(@start_date, @end_date) r
  GROUP BY r.owner_id, r.root_chat_id
), per_user AS (
  SELECT pr.owner_id,
    sum(pr.total_cost_micros)::bigint AS total_cost_micros,
    sum(pr.message_count)::bigint AS message_count,
    count(*)::bigint AS chat_count,
    sum(pr.total_input_tokens)::bigint AS total_input_tokens,
    sum(pr.total_output_tokens)::bigint AS total_output_tokens,
    sum(pr.total_cache_read_tokens)::bigint AS total_cache_read_tokens,
    sum(pr.total_cache_creation_tokens)::bigint AS total_cache_creation_tokens,
    sum(pr.total_runtime_ms)::bigint AS total_runtime_ms
  FROM per_root pr
  GROUP BY pr.owner_id
), matching AS (
  SELECT u.id AS user_id, u.username, u.name, pu.total_cost_micros, pu.message_count,
    pu.chat_count, pu.total_input_tokens, pu.total_output_tokens, pu.total_cache_read_tokens,
    pu.total_cache_creation_tokens, pu.total_runtime_ms
  FROM per_user pu
  JOIN users u ON u.id = pu.owner_id
  WHERE strpos(lower(u.username), lower(@search::text)) > 0
    OR strpos(lower(u.name), lower(@search::text)) > 0
)
SELECT (SELECT count(*) FROM matching)::bigint AS total_count, page.*
FROM (SELECT 1) one
LEFT JOIN LATERAL (
  SELECT m.* FROM matching m
  ORDER BY m.total_cost_micros DESC, m.user_id
  LIMIT sqlc.arg('limit') OFFSET sqlc.arg('offset')
) page ON true;

-- name: GetChatCostByChatID :one
-- GET /{chat}/cost: the chat and its descendants, all time (chat_cost_daily_key by chat id).
SELECT c.id AS chat_id,
  COALESCE(sum(d.total_cost_micros), 0)::bigint AS total_cost_micros,
  COALESCE(sum(d.priced_message_count + d.unpriced_message_count), 0)::bigint AS message_count,
  COALESCE(sum(d.unpriced_message_count), 0)::bigint AS unpriced_message_count,
  COALESCE(sum(d.runtime_ms), 0)::bigint AS total_runtime_ms
FROM chats c
LEFT JOIN chat_cost_daily d ON d.chat_id = ANY (chat_subtree_ids(c.id))
WHERE c.id = @chat_id AND c.owner_id = @owner_id
GROUP BY c.id;
