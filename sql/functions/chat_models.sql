-- Provider and model-config rules: one default at a time, what may not be deleted or disabled,
-- and which provider a model config may point at.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
--
-- WARNING (lock order): the default lock (chat_lock_model_default) FIRST, then the model config
-- row, then its provider row (FOR SHARE), then the previous default's row. Provider functions
-- lock only their provider row (FOR UPDATE) and read model configs without locking them.
-- Every check that reads other rows runs after the lock that guards them, as its own statement:
-- these functions are VOLATILE, so under READ COMMITTED each statement sees what committed while
-- they waited.

-- Serialises every change of which model config is the default, so two concurrent "make default"
-- requests both succeed in turn and leave exactly one default (without it the second would hit
-- chat_model_configs_one_default, or clear a default it cannot see yet). Transaction-scoped.
CREATE OR REPLACE FUNCTION chat_lock_model_default() RETURNS void
LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(hashtext('pgchatd.chat_model_configs'), hashtext('default'));
$$;

-- The live provider a model config may point at, share-locked so that it cannot be deleted or
-- disabled until this transaction ends. PC400 when it is missing or deleted.
CREATE OR REPLACE FUNCTION chat_provider_lock_live(p_provider_id uuid) RETURNS chat_providers
LANGUAGE plpgsql AS $$
DECLARE
  v_provider chat_providers;
BEGIN
  SELECT * INTO v_provider FROM chat_providers WHERE id = p_provider_id AND NOT deleted FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Provider not found.' USING ERRCODE = 'PC400',
      DETAIL = format('provider_id %s', p_provider_id);
  END IF;
  RETURN v_provider;
END;
$$;

-- The default model must be usable: its provider must be enabled (the model config itself is held
-- enabled and not deleted by chat_model_configs_default_usable).
CREATE OR REPLACE FUNCTION chat_require_default_provider(p_provider chat_providers) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT p_provider.enabled THEN
    RAISE EXCEPTION 'The default model config cannot be on a disabled provider.' USING ERRCODE = 'PC409',
      DETAIL = format('provider %s is disabled; enable it first', p_provider.id);
  END IF;
END;
$$;

-- Clears the current default (other than p_keep_id). Call with the default lock held.
CREATE OR REPLACE FUNCTION chat_clear_model_default(p_keep_id uuid) RETURNS void
LANGUAGE sql AS $$
  UPDATE chat_model_configs SET is_default = false, updated_at = now()
  WHERE is_default AND id IS DISTINCT FROM p_keep_id;
$$;

-- POST /model-configs. A new default replaces the previous one in the same transaction.
DROP FUNCTION IF EXISTS chat_model_config_create(
  uuid, text, text, integer, boolean, boolean, bigint, bigint, bigint, bigint);
CREATE OR REPLACE FUNCTION chat_model_config_create(
  p_provider_id uuid, p_model text, p_display_name text, p_context_limit integer,
  p_enabled boolean, p_is_default boolean, p_input_price_micros bigint,
  p_output_price_micros bigint, p_cache_read_price_micros bigint, p_cache_write_price_micros bigint,
  p_store_responses boolean
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  v_provider chat_providers;
  v_id uuid;
BEGIN
  IF p_is_default THEN
    PERFORM chat_lock_model_default();
  END IF;
  v_provider := chat_provider_lock_live(p_provider_id);
  IF p_is_default THEN
    PERFORM chat_require_default_provider(v_provider);
    PERFORM chat_clear_model_default(NULL);
  END IF;
  INSERT INTO chat_model_configs (
    provider_id, model, display_name, context_limit, enabled, is_default,
    input_price_micros, output_price_micros, cache_read_price_micros, cache_write_price_micros,
    store_responses
  ) VALUES (
    p_provider_id, p_model, p_display_name, p_context_limit, p_enabled, p_is_default,
    p_input_price_micros, p_output_price_micros, p_cache_read_price_micros, p_cache_write_price_micros,
    COALESCE(p_store_responses, false)
  )
  RETURNING id INTO v_id;
  RETURN v_id;
END;
$$;

-- PATCH /model-configs/{id}: NULL arguments leave the column alone; prices change only when
-- p_set_pricing (NULL prices = free). PC404 for a missing or deleted config.
-- There is always a default once one exists: it stops being the default only when another
-- becomes it (is_default = false on the default is PC409), and it cannot be disabled
-- (chat_model_configs_default_usable) or moved to a disabled provider.
DROP FUNCTION IF EXISTS chat_model_config_update(
  uuid, uuid, text, text, integer, boolean, boolean, boolean, bigint, bigint, bigint, bigint);
CREATE OR REPLACE FUNCTION chat_model_config_update(
  p_id uuid, p_provider_id uuid, p_model text, p_display_name text, p_context_limit integer,
  p_enabled boolean, p_is_default boolean, p_set_pricing boolean, p_input_price_micros bigint,
  p_output_price_micros bigint, p_cache_read_price_micros bigint, p_cache_write_price_micros bigint,
  p_store_responses boolean
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  v_config chat_model_configs;
  v_provider chat_providers;
BEGIN
  IF p_is_default IS NOT NULL THEN
    PERFORM chat_lock_model_default();
  END IF;
  SELECT * INTO v_config FROM chat_model_configs WHERE id = p_id AND NOT deleted FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Model config not found.' USING ERRCODE = 'PC404';
  END IF;
  IF p_is_default = false AND v_config.is_default THEN
    RAISE EXCEPTION 'The default model config stays the default until another one becomes it.'
      USING ERRCODE = 'PC409', DETAIL = 'Make another model config the default instead.';
  END IF;
  v_provider := chat_provider_lock_live(COALESCE(p_provider_id, v_config.provider_id));
  IF p_is_default OR v_config.is_default THEN
    PERFORM chat_require_default_provider(v_provider);
  END IF;
  IF p_is_default AND NOT v_config.is_default THEN
    PERFORM chat_clear_model_default(p_id);
  END IF;
  UPDATE chat_model_configs SET
    provider_id = v_provider.id,
    model = COALESCE(p_model, model),
    display_name = COALESCE(p_display_name, display_name),
    context_limit = COALESCE(p_context_limit, context_limit),
    enabled = COALESCE(p_enabled, enabled),
    is_default = COALESCE(p_is_default, is_default),
    input_price_micros = CASE WHEN p_set_pricing THEN p_input_price_micros ELSE input_price_micros END,
    output_price_micros = CASE WHEN p_set_pricing THEN p_output_price_micros ELSE output_price_micros END,
    cache_read_price_micros =
      CASE WHEN p_set_pricing THEN p_cache_read_price_micros ELSE cache_read_price_micros END,
    cache_write_price_micros =
      CASE WHEN p_set_pricing THEN p_cache_write_price_micros ELSE cache_write_price_micros END,
    store_responses = COALESCE(p_store_responses, store_responses),
    updated_at = now()
  WHERE id = p_id;
  RETURN p_id;
END;
$$;

-- DELETE /model-configs/{id}: soft delete (chats and messages keep referring to it). PC404 for a
-- missing or deleted config; PC409 for the default, which must be replaced first: without a
-- default, chats created without a model_config_id would fail.
CREATE OR REPLACE FUNCTION chat_model_config_delete(p_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_config chat_model_configs;
BEGIN
  SELECT * INTO v_config FROM chat_model_configs WHERE id = p_id AND NOT deleted FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Model config not found.' USING ERRCODE = 'PC404';
  END IF;
  IF v_config.is_default THEN
    RAISE EXCEPTION 'The default model config cannot be deleted.' USING ERRCODE = 'PC409',
      DETAIL = 'Make another model config the default first.';
  END IF;
  UPDATE chat_model_configs SET deleted = true, updated_at = now() WHERE id = p_id;
END;
$$;

-- PATCH /providers/{id}: NULL arguments leave the column alone; base_url and the key change only
-- when their p_set_ flag is true (NULL clears them). PC404 for a missing or deleted provider;
-- PC409 when disabling the provider of the default model config. A key policy no key can satisfy
-- fails its CHECK (chat_providers_key_path and the others of 00048).
DROP FUNCTION IF EXISTS chat_provider_update(uuid, text, boolean, text, boolean, boolean, bytea);
CREATE OR REPLACE FUNCTION chat_provider_update(
  p_id uuid, p_display_name text, p_set_base_url boolean, p_base_url text, p_enabled boolean,
  p_set_api_key boolean, p_api_key_ciphertext bytea, p_central_key_enabled boolean,
  p_allow_user_key boolean, p_central_fallback boolean
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  v_provider chat_providers;
BEGIN
  UPDATE chat_providers SET
    display_name = COALESCE(p_display_name, display_name),
    base_url = CASE WHEN p_set_base_url THEN p_base_url ELSE base_url END,
    enabled = COALESCE(p_enabled, enabled),
    api_key_ciphertext = CASE WHEN p_set_api_key THEN p_api_key_ciphertext ELSE api_key_ciphertext END,
    central_key_enabled = COALESCE(p_central_key_enabled, central_key_enabled),
    allow_user_key = COALESCE(p_allow_user_key, allow_user_key),
    central_fallback = COALESCE(p_central_fallback, central_fallback),
    updated_at = now()
  WHERE id = p_id AND NOT deleted
  RETURNING * INTO v_provider;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Provider not found.' USING ERRCODE = 'PC404';
  END IF;
  -- After the row lock: a concurrent "make default" on this provider has committed or waits.
  IF NOT v_provider.enabled
     AND EXISTS (SELECT 1 FROM chat_model_configs WHERE provider_id = p_id AND is_default) THEN
    RAISE EXCEPTION 'The provider of the default model config cannot be disabled.'
      USING ERRCODE = 'PC409', DETAIL = 'Make a model config of another provider the default first.';
  END IF;
  RETURN p_id;
END;
$$;

-- Which key a model call on provider p_provider uses for a user who has stored their own
-- (p_has_user_key) or not, under the deployment's routing (p_gateway: calls go through the model
-- gateway, which holds the central credentials) (docs/api.md "Users' own keys"), the one rule
-- behind GET /models and every turn, title and summary:
--   'user'     users' keys are allowed and this user has one;
--   'central'  else, when the provider's own key may be used (central_key_enabled, and users'
--              keys are not allowed or central_fallback is on) and it is there: through the
--              gateway always (the gateway applies its own), directly when the provider has one
--              or its kind needs none (openai-compatible, local);
--   NULL       else, with the reason: 'user_key_required' when the user could set their own,
--              'missing_key' when only the deployment can fix it. The caller fails closed.
DROP FUNCTION IF EXISTS chat_provider_key_route(chat_providers, boolean);
CREATE OR REPLACE FUNCTION chat_provider_key_route(
  p_provider chat_providers, p_has_user_key boolean, p_gateway boolean,
  OUT key_source text, OUT unavailable_reason text
)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  -- Unknown inputs give no key: a NULL routing must not pass as "the gateway holds the key".
  IF p_has_user_key IS NULL OR p_gateway IS NULL THEN
    unavailable_reason := 'missing_key';
  ELSIF p_provider.allow_user_key AND p_has_user_key THEN
    key_source := 'user';
  ELSIF p_provider.central_key_enabled
        AND (NOT p_provider.allow_user_key OR p_provider.central_fallback)
        AND (p_gateway OR p_provider.api_key_ciphertext IS NOT NULL
             OR p_provider.provider IN ('openai-compatible', 'local')) THEN
    key_source := 'central';
  ELSIF p_provider.allow_user_key THEN
    unavailable_reason := 'user_key_required';
  ELSE
    unavailable_reason := 'missing_key';
  END IF;
END;
$$;

-- PUT /providers/{id}/user-key: stores (or replaces) the caller's own key for a live provider
-- that accepts users' keys, under a share lock of the provider so a concurrent delete either
-- waits (then finds it and removes the key with the provider) or has happened (PC404).
CREATE OR REPLACE FUNCTION chat_provider_set_user_key(
  p_provider_id uuid, p_user_id uuid, p_api_key_ciphertext bytea
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_provider chat_providers;
BEGIN
  SELECT * INTO v_provider FROM chat_providers WHERE id = p_provider_id AND NOT deleted FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Provider not found.' USING ERRCODE = 'PC404';
  END IF;
  IF NOT v_provider.allow_user_key THEN
    RAISE EXCEPTION 'This provider does not accept users'' own keys.' USING ERRCODE = 'PC400',
      DETAIL = 'A site owner can allow them with allow_user_key.';
  END IF;
  INSERT INTO chat_provider_user_keys AS k (provider_id, user_id, api_key_ciphertext)
  VALUES (p_provider_id, p_user_id, p_api_key_ciphertext)
  ON CONFLICT (provider_id, user_id) DO UPDATE
    SET api_key_ciphertext = EXCLUDED.api_key_ciphertext, updated_at = now();
END;
$$;

-- DELETE /providers/{id}/user-key: removes the caller's own key (none is fine); PC404 for a
-- missing or deleted provider.
CREATE OR REPLACE FUNCTION chat_provider_delete_user_key(p_provider_id uuid, p_user_id uuid)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM chat_providers WHERE id = p_provider_id AND NOT deleted;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Provider not found.' USING ERRCODE = 'PC404';
  END IF;
  DELETE FROM chat_provider_user_keys WHERE provider_id = p_provider_id AND user_id = p_user_id;
END;
$$;

-- DELETE /providers/{id}: allowed once none of its model configs is live (the seeded local
-- provider included). Soft: deleted configs still point at it. The row is disabled and its key
-- dropped, users' keys with it, so a deleted provider keeps no secret. PC404 for a missing or deleted provider.
CREATE OR REPLACE FUNCTION chat_provider_delete(p_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_live integer;
BEGIN
  PERFORM 1 FROM chat_providers WHERE id = p_id AND NOT deleted FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Provider not found.' USING ERRCODE = 'PC404';
  END IF;
  -- After the row lock: model configs being created on this provider have committed (or will
  -- see it deleted).
  SELECT count(*) INTO v_live FROM chat_model_configs WHERE provider_id = p_id AND NOT deleted;
  IF v_live > 0 THEN
    RAISE EXCEPTION 'The provider still has model configs.' USING ERRCODE = 'PC409',
      DETAIL = format('%s model config(s) use it; delete them first.', v_live);
  END IF;
  UPDATE chat_providers
  SET deleted = true, enabled = false, api_key_ciphertext = NULL, updated_at = now()
  WHERE id = p_id;
  DELETE FROM chat_provider_user_keys WHERE provider_id = p_id;
END;
$$;
