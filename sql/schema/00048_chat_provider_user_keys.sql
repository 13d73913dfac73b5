-- Users' own provider keys (docs/api.md "Users' own keys"): each provider says whether its own
-- (central) key may be used, whether users may bring theirs, and whether a user without one falls
-- back to the central key; chat_provider_key_route (sql/functions/chat_models.sql) applies it.
-- chat_providers holds a handful of administrators' rows: the CHECKs validate at once.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE chat_providers
  ADD COLUMN central_key_enabled boolean NOT NULL DEFAULT true,
  ADD COLUMN allow_user_key boolean NOT NULL DEFAULT false,
  ADD COLUMN central_fallback boolean NOT NULL DEFAULT false,
  -- Some key must be possible: a provider nobody can call is a configuration error.
  ADD CONSTRAINT chat_providers_key_path CHECK (central_key_enabled OR allow_user_key),
  -- Falling back means from a user's key to the central one: both must be allowed.
  ADD CONSTRAINT chat_providers_central_fallback
    CHECK (NOT central_fallback OR (central_key_enabled AND allow_user_key)),
  -- The local models take no key.
  ADD CONSTRAINT chat_providers_local_no_user_key CHECK (provider <> 'local' OR NOT allow_user_key);

-- A user's own key for a provider, sealed like the provider's (AES-256-GCM under the server's
-- secret key, bound to the provider and the user), never returned.
CREATE TABLE chat_provider_user_keys (
  provider_id uuid NOT NULL REFERENCES chat_providers (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  api_key_ciphertext bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider_id, user_id)
);
-- Deleting a user deletes their keys.
CREATE INDEX chat_provider_user_keys_user_id_idx ON chat_provider_user_keys (user_id);
