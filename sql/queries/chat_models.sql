-- name: InsertChatProvider :one
-- POST /providers. The id comes from the caller: the API key is encrypted with the provider id as
-- associated data before the row exists. Duplicates hit chat_providers_kind_base_url_key.
INSERT INTO chat_providers (
  id, provider, display_name, base_url, enabled, api_key_ciphertext, central_key_enabled,
  allow_user_key, central_fallback
)
VALUES (
  @id, @provider, @display_name, sqlc.narg(base_url), @enabled, sqlc.narg(api_key_ciphertext),
  @central_key_enabled, @allow_user_key, @central_fallback
)
RETURNING id, provider, display_name, base_url, enabled,
  api_key_ciphertext IS NOT NULL AS has_api_key, central_key_enabled, allow_user_key,
  central_fallback, created_at, updated_at;

-- name: ListChatProviders :many
-- GET /providers: live providers, oldest first. Never selects the key, only whether there is one.
SELECT id, provider, display_name, base_url, enabled,
  api_key_ciphertext IS NOT NULL AS has_api_key, central_key_enabled, allow_user_key,
  central_fallback, created_at, updated_at
FROM chat_providers
WHERE NOT deleted
ORDER BY created_at, id;

-- name: GetChatProviderByID :one
SELECT id, provider, display_name, base_url, enabled,
  api_key_ciphertext IS NOT NULL AS has_api_key, central_key_enabled, allow_user_key,
  central_fallback, created_at, updated_at
FROM chat_providers
WHERE id = @id AND NOT deleted;

-- name: UpdateChatProviderByID :one
-- chat_provider_update: see sql/functions/chat_models.sql.
SELECT chat_provider_update(
  @id, sqlc.narg(display_name), @set_base_url, sqlc.narg(base_url)::text, sqlc.narg(enabled),
  @set_api_key, sqlc.narg(api_key_ciphertext)::bytea, sqlc.narg(central_key_enabled)::boolean,
  sqlc.narg(allow_user_key)::boolean, sqlc.narg(central_fallback)::boolean
) AS id;

-- name: DeleteChatProviderByID :exec
SELECT chat_provider_delete(@id);

-- name: InsertChatModelConfig :one
-- A plain insert for test fixtures; the API creates model configs with CreateChatModelConfig.
INSERT INTO chat_model_configs (
  provider_id, model, display_name, context_limit, enabled, is_default,
  input_price_micros, output_price_micros, cache_read_price_micros, cache_write_price_micros
) VALUES (
  @provider_id, @model, @display_name, @context_limit, @enabled, @is_default,
  sqlc.narg(input_price_micros)::bigint, sqlc.narg(output_price_micros)::bigint,
  sqlc.narg(cache_read_price_micros)::bigint, sqlc.narg(cache_write_price_micros)::bigint
)
RETURNING id, provider_id, model, display_name, context_limit, enabled, is_default;

-- name: CreateChatModelConfig :one
-- chat_model_config_create: a new default replaces the old one under the default lock.
SELECT chat_model_config_create(
  @provider_id, @model, @display_name, @context_limit, @enabled, @is_default,
  sqlc.narg(input_price_micros)::bigint, sqlc.narg(output_price_micros)::bigint,
  sqlc.narg(cache_read_price_micros)::bigint, sqlc.narg(cache_write_price_micros)::bigint,
  sqlc.narg(store_responses)::boolean
) AS id;

-- name: ListChatModelConfigs :many
-- GET /model-configs: every live model config (disabled ones too), oldest first.
SELECT m.id, m.provider_id, p.provider, m.model, m.display_name, m.context_limit, m.enabled,
  m.is_default, m.input_price_micros, m.output_price_micros, m.cache_read_price_micros,
  m.cache_write_price_micros, m.store_responses, m.created_at, m.updated_at
FROM chat_model_configs m
JOIN chat_providers p ON p.id = m.provider_id
WHERE NOT m.deleted
ORDER BY m.created_at, m.id;

-- name: GetChatModelConfigByID :one
SELECT m.id, m.provider_id, p.provider, m.model, m.display_name, m.context_limit, m.enabled,
  m.is_default, m.input_price_micros, m.output_price_micros, m.cache_read_price_micros,
  m.cache_write_price_micros, m.store_responses, m.created_at, m.updated_at
FROM chat_model_configs m
JOIN chat_providers p ON p.id = m.provider_id
WHERE m.id = @id AND NOT m.deleted;

-- name: UpdateChatModelConfigByID :one
-- chat_model_config_update: see sql/functions/chat_models.sql.
SELECT chat_model_config_update(
  @id, sqlc.narg(provider_id)::uuid, sqlc.narg(model)::text, sqlc.narg(display_name)::text,
  sqlc.narg(context_limit)::integer, sqlc.narg(enabled)::boolean, sqlc.narg(is_default)::boolean,
  @set_pricing, sqlc.narg(input_price_micros)::bigint, sqlc.narg(output_price_micros)::bigint,
  sqlc.narg(cache_read_price_micros)::bigint, sqlc.narg(cache_write_price_micros)::bigint,
  sqlc.narg(store_responses)::boolean
) AS id;

-- name: DeleteChatModelConfigByID :exec
SELECT chat_model_config_delete(@id);

-- name: ListEnabledModelConfigs :many
-- GET /models: usable models (enabled, not deleted, on an enabled provider) grouped by provider,
-- each provider with whether the caller can use it (chat_provider_key_route, under the
-- deployment's routing: @gateway) and why not.
SELECT p.id AS provider_id, p.provider, p.display_name AS provider_display_name,
  p.allow_user_key, k.user_id IS NOT NULL AS has_user_api_key,
  r.key_source IS NOT NULL AS available, r.unavailable_reason,
  m.id, m.model, m.display_name, m.context_limit, m.is_default,
  m.input_price_micros, m.output_price_micros, m.cache_read_price_micros, m.cache_write_price_micros
FROM chat_model_configs m
JOIN chat_providers p ON p.id = m.provider_id
LEFT JOIN chat_provider_user_keys k ON k.provider_id = p.id AND k.user_id = @user_id
CROSS JOIN LATERAL chat_provider_key_route(p, k.user_id IS NOT NULL, @gateway) r
WHERE m.enabled AND NOT m.deleted AND p.enabled
ORDER BY p.provider, p.display_name, p.id, m.is_default DESC, m.display_name, m.model;
