-- name: GetChatUsageLimitConfig :one
-- GET /usage-limits (site owners): the deployment's limit and period, and how many usable model
-- configs have no pricing (their messages count as unpriced, never as free).
SELECT g.spend_limit_micros, g.period, g.updated_at,
  (SELECT count(*) FROM chat_model_configs m
   WHERE m.enabled AND NOT m.deleted
     AND num_nonnulls(m.input_price_micros, m.output_price_micros, m.cache_read_price_micros,
       m.cache_write_price_micros) = 0)::bigint AS unpriced_model_count
FROM chat_usage_limit_config g;

-- name: ListChatUsageLimitUserOverrides :many
-- The users with an override (users_chat_spend_limit_idx), or the one target_user_id names.
SELECT u.id AS user_id, u.username, u.name, u.chat_spend_limit_micros::bigint AS spend_limit_micros
FROM users u
WHERE u.chat_spend_limit_micros IS NOT NULL
  AND (sqlc.narg(target_user_id)::uuid IS NULL OR u.id = sqlc.narg(target_user_id)::uuid)
ORDER BY lower(u.username);

-- name: ListChatUsageLimitGroupOverrides :many
-- The groups with an override (groups_chat_spend_limit_idx), or the one group_id names.
SELECT gr.id AS group_id, gr.name AS group_name, gr.organization_id,
  (SELECT count(*) FROM group_members gm WHERE gm.group_id = gr.id)::bigint AS member_count,
  gr.chat_spend_limit_micros::bigint AS spend_limit_micros
FROM groups gr
WHERE gr.chat_spend_limit_micros IS NOT NULL
  AND (sqlc.narg(group_id)::uuid IS NULL OR gr.id = sqlc.narg(group_id)::uuid)
ORDER BY gr.organization_id, lower(gr.name);

-- name: SetChatUsageLimitConfig :exec
-- chat_usage_limits_set_config: see sql/functions/chat_usage_limits.sql.
SELECT chat_usage_limits_set_config(@actor_id, sqlc.narg(spend_limit_micros), sqlc.narg(period));

-- name: SetChatUsageLimitUserOverride :exec
-- chat_usage_limits_set_user_override (NULL deletes it): PC404 for an unknown user.
SELECT chat_usage_limits_set_user_override(@actor_id, @target_user_id, sqlc.narg(spend_limit_micros));

-- name: SetChatUsageLimitGroupOverride :exec
-- chat_usage_limits_set_group_override (NULL deletes it): PC404 for an unknown group.
SELECT chat_usage_limits_set_group_override(@actor_id, @group_id, sqlc.narg(spend_limit_micros));

-- name: GetChatUsageLimitStatus :one
-- GET /usage-limits/status and a cost summary's usage_limit: the user's limit, where it comes
-- from, and their spend in the current period in one organization.
SELECT s.is_limited, s.source, s.period, s.spend_limit_micros, s.current_spend, s.period_start,
  s.period_end
FROM chat_usage_limit_status(@user_id, @organization_id) s;
