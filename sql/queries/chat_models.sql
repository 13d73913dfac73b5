-- name: InsertChatProvider :one
INSERT INTO chat_providers (provider, display_name, base_url, enabled)
VALUES (@provider, @display_name, sqlc.narg(base_url), @enabled)
RETURNING id, provider, display_name, base_url, enabled, created_at;

-- name: InsertChatModelConfig :one
INSERT INTO chat_model_configs (
  provider_id, model, display_name, context_limit, enabled, is_default,
  input_price_micros, output_price_micros, cache_read_price_micros, cache_write_price_micros
) VALUES (
  @provider_id, @model, @display_name, @context_limit, @enabled, @is_default,
  sqlc.narg(input_price_micros)::bigint, sqlc.narg(output_price_micros)::bigint,
  sqlc.narg(cache_read_price_micros)::bigint, sqlc.narg(cache_write_price_micros)::bigint
)
RETURNING id, provider_id, model, display_name, context_limit, enabled, is_default;

-- name: ListEnabledModelConfigs :many
-- GET /models: usable models (enabled, not deleted, on an enabled provider) grouped by provider.
SELECT p.id AS provider_id, p.provider, p.display_name AS provider_display_name,
  m.id, m.model, m.display_name, m.context_limit, m.is_default,
  m.input_price_micros, m.output_price_micros, m.cache_read_price_micros, m.cache_write_price_micros
FROM chat_model_configs m
JOIN chat_providers p ON p.id = m.provider_id
WHERE m.enabled AND NOT m.deleted AND p.enabled
ORDER BY p.provider, p.display_name, p.id, m.is_default DESC, m.display_name, m.model;
