-- Provider and model-config administration (the owner routes /chats/providers and
-- /chats/model-configs): provider soft delete, the duplicate rule and base_url rules.
-- Rules live in sql/functions/chat_models.sql.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- Soft delete: model configs (soft-deleted ones included, which chats and messages keep referring
-- to) point at their provider for good, so a deleted provider stays as a row. chat_provider_delete
-- also disables it and drops its encrypted key.
ALTER TABLE chat_providers ADD COLUMN deleted boolean NOT NULL DEFAULT false;

ALTER TABLE chat_providers
  -- The API checks the URL properly; this keeps other writers from storing something that is not
  -- an http(s) URL at all.
  ADD CONSTRAINT chat_providers_base_url_http CHECK (
    base_url IS NULL OR base_url = '' OR base_url ~* '^https?://[^/?#[:space:]]+'
  ),
  -- openai-compatible has no default endpoint: it is only usable with a base_url.
  ADD CONSTRAINT chat_providers_base_url_required CHECK (
    provider <> 'openai-compatible' OR COALESCE(base_url, '') <> ''
  );

-- The duplicate rule: one live provider per kind and endpoint. NULL and '' both mean "the kind's
-- default endpoint", and a trailing '/' does not make another endpoint.
CREATE UNIQUE INDEX chat_providers_kind_base_url_key
  ON chat_providers (provider, rtrim(COALESCE(base_url, ''), '/'))
  WHERE NOT deleted;
