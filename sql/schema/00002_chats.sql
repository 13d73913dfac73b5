-- Chats: the chat model, its messages, model configuration, files and diff statuses.
-- Rules (archive cascade, pins, version/updated_at, archived read-only) live in
-- sql/functions/chats.sql and sql/triggers/*.sql; this file holds only schema and seed data.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

CREATE TYPE chat_status AS ENUM (
  'waiting', 'pending', 'running', 'paused', 'completed', 'error', 'requires_action'
);
CREATE TYPE chat_client_type AS ENUM ('ui', 'api');
CREATE TYPE chat_message_role AS ENUM ('system', 'user', 'assistant', 'tool');
-- Who sees a message: users (UI only, e.g. notices), the model (system prompt, context files), or both.
CREATE TYPE chat_message_visibility AS ENUM ('user', 'model', 'both');
CREATE TYPE chat_provider_kind AS ENUM ('openai', 'anthropic', 'openai-compatible', 'local');

CREATE TABLE chat_providers (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider chat_provider_kind NOT NULL,
  display_name text NOT NULL DEFAULT '',
  base_url text,
  -- Encrypted at rest (AES-GCM with the server's secret key); never returned by the API.
  api_key_ciphertext bytea,
  enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_model_configs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id uuid NOT NULL REFERENCES chat_providers (id),
  model text NOT NULL,
  display_name text NOT NULL DEFAULT '',
  context_limit integer NOT NULL,
  enabled boolean NOT NULL DEFAULT true,
  is_default boolean NOT NULL DEFAULT false,
  -- Prices in micros per million tokens; NULL means free (no pricing).
  input_price_micros bigint,
  output_price_micros bigint,
  cache_read_price_micros bigint,
  cache_write_price_micros bigint,
  -- Soft delete: chats and messages keep referring to a removed config.
  deleted boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chat_model_configs_context_limit_positive CHECK (context_limit > 0),
  CONSTRAINT chat_model_configs_prices_nonnegative CHECK (
    input_price_micros >= 0 AND output_price_micros >= 0
    AND cache_read_price_micros >= 0 AND cache_write_price_micros >= 0
  ),
  CONSTRAINT chat_model_configs_default_usable CHECK (NOT is_default OR (enabled AND NOT deleted))
);
-- At most one default model config.
CREATE UNIQUE INDEX chat_model_configs_one_default ON chat_model_configs ((true)) WHERE is_default;

CREATE TABLE chats (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  workspace_id uuid REFERENCES workspaces (id) ON DELETE SET NULL,
  build_id uuid REFERENCES workspace_builds (id) ON DELETE SET NULL,
  agent_id uuid REFERENCES workspace_agents (id) ON DELETE SET NULL,
  parent_chat_id uuid REFERENCES chats (id) ON DELETE CASCADE,
  -- The top of the family; NULL exactly for roots. Set by chats__derive_family from the parent.
  root_chat_id uuid REFERENCES chats (id) ON DELETE CASCADE,
  last_model_config_id uuid NOT NULL REFERENCES chat_model_configs (id),
  title text NOT NULL DEFAULT '',
  status chat_status NOT NULL DEFAULT 'waiting',
  last_error jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- WARNING: moves only for the changes API.md lists (see chats__track_changes), not on every update.
  updated_at timestamptz NOT NULL DEFAULT now(),
  archived boolean NOT NULL DEFAULT false,
  -- 0 = unpinned; 1..n = position among the owner's pinned, unarchived roots (kept dense by chat_pin).
  pin_order integer NOT NULL DEFAULT 0,
  mode text,
  plan_mode text,
  client_type chat_client_type NOT NULL DEFAULT 'api',
  mcp_server_ids uuid[] NOT NULL DEFAULT '{}',
  labels jsonb NOT NULL DEFAULT '{}',
  -- Client-declared tools: [{name, description, input_schema}].
  dynamic_tools jsonb NOT NULL DEFAULT '[]',
  context_aggregate_hash text,
  context_dirty_since timestamptz,
  context_dirty_resources jsonb,
  context_error text,
  last_turn_summary text,
  -- The owner's read cursor: the newest message id seen. No foreign key: messages can be removed.
  last_read_message_id bigint,
  worker_id uuid,
  started_at timestamptz,
  heartbeat_at timestamptz,
  -- The API key that created the chat (attribution); kept NULL when the key is deleted.
  api_key_id text REFERENCES api_keys (id) ON DELETE SET NULL,
  -- Increases on every change of the row; clients drop snapshots older than one they have.
  version bigint NOT NULL DEFAULT 1,
  CONSTRAINT chats_root_matches_parent CHECK ((parent_chat_id IS NULL) = (root_chat_id IS NULL)),
  CONSTRAINT chats_not_own_parent CHECK (parent_chat_id <> id AND root_chat_id <> id),
  CONSTRAINT chats_pin_only_unarchived_roots CHECK (
    pin_order = 0 OR (parent_chat_id IS NULL AND NOT archived)
  ),
  CONSTRAINT chats_pin_order_nonnegative CHECK (pin_order >= 0),
  CONSTRAINT chats_labels_object CHECK (jsonb_typeof(labels) = 'object'),
  CONSTRAINT chats_dynamic_tools_array CHECK (jsonb_typeof(dynamic_tools) = 'array'),
  CONSTRAINT chats_title_length CHECK (length(title) <= 256)
);

-- The chat list: one owner's roots in one archive state, pinned first (by pin_order), then newest
-- update first, id as tie-break. The key columns are exactly the ORDER BY of ListChatsByOwner,
-- scanned backward, so a page (and a keyset cursor, as a row comparison) needs no sort.
CREATE INDEX chats_list_order_idx ON chats (
  owner_id, archived, (pin_order > 0), (-pin_order), updated_at, id
) WHERE parent_chat_id IS NULL;
-- All of an owner's chats, children included: the pull-request filters of the list look up an
-- owner's diff statuses through it, and deleting a user finds their chats with it.
CREATE INDEX chats_owner_id_idx ON chats (owner_id) INCLUDE (root_chat_id);
-- Children of listed roots, newest first.
CREATE INDEX chats_root_chat_id_idx ON chats (root_chat_id, created_at DESC, id DESC)
  WHERE root_chat_id IS NOT NULL;
CREATE INDEX chats_parent_chat_id_idx ON chats (parent_chat_id) WHERE parent_chat_id IS NOT NULL;
-- Dense pin renumbering touches only the owner's pinned roots.
CREATE INDEX chats_pinned_idx ON chats (owner_id, pin_order) WHERE pin_order > 0;
-- Latest root chat per workspace (GET /by-workspace).
CREATE INDEX chats_workspace_latest_idx ON chats (workspace_id, updated_at DESC, id DESC)
  WHERE parent_chat_id IS NULL AND NOT archived AND workspace_id IS NOT NULL;
-- label=key:value filters (jsonb containment).
CREATE INDEX chats_labels_idx ON chats USING gin (labels jsonb_path_ops);

CREATE TABLE chat_messages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  role chat_message_role NOT NULL,
  -- Part[]: [{type: text|reasoning|tool-call|tool-result|file|context-file, ...}]
  content jsonb NOT NULL,
  visibility chat_message_visibility NOT NULL DEFAULT 'both',
  -- Soft delete (edits remove a message and everything after it).
  deleted boolean NOT NULL DEFAULT false,
  model_config_id uuid REFERENCES chat_model_configs (id),
  created_by uuid REFERENCES users (id) ON DELETE SET NULL,
  api_key_id text REFERENCES api_keys (id) ON DELETE SET NULL,
  input_tokens bigint,
  output_tokens bigint,
  total_tokens bigint,
  reasoning_tokens bigint,
  cache_creation_tokens bigint,
  cache_read_tokens bigint,
  context_limit integer,
  total_cost_micros bigint,
  runtime_ms bigint,
  provider_response_id text
);
-- Messages of a chat in order, for history pages and prompts.
CREATE INDEX chat_messages_chat_id_idx ON chat_messages (chat_id, id);
-- has_unread: is there a visible assistant message newer than the read cursor?
CREATE INDEX chat_messages_unread_idx ON chat_messages (chat_id, id DESC)
  WHERE role = 'assistant' AND NOT deleted;

CREATE TABLE chat_files (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name text NOT NULL,
  mimetype text NOT NULL,
  data bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chat_files_name_length CHECK (octet_length(name) BETWEEN 1 AND 255),
  CONSTRAINT chat_files_size_limit CHECK (octet_length(data) <= 10 * 1024 * 1024)
);
CREATE INDEX chat_files_owner_id_idx ON chat_files (owner_id);

-- Files referenced by a chat's messages (GET /{chat} lists them).
CREATE TABLE chat_file_links (
  chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
  file_id uuid NOT NULL REFERENCES chat_files (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chat_id, file_id)
);
CREATE INDEX chat_file_links_file_id_idx ON chat_file_links (file_id);

-- The pull request / branch a chat's workspace pushed; refreshed by a background job.
CREATE TABLE chat_diff_statuses (
  chat_id uuid PRIMARY KEY REFERENCES chats (id) ON DELETE CASCADE,
  url text,
  pull_request_state text,
  pull_request_title text NOT NULL DEFAULT '',
  pull_request_draft boolean NOT NULL DEFAULT false,
  pr_number integer,
  changes_requested boolean NOT NULL DEFAULT false,
  additions integer NOT NULL DEFAULT 0,
  deletions integer NOT NULL DEFAULT 0,
  changed_files integer NOT NULL DEFAULT 0,
  git_branch text NOT NULL DEFAULT '',
  git_remote_origin text NOT NULL DEFAULT '',
  refreshed_at timestamptz,
  stale_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chat_diff_statuses_state CHECK (pull_request_state IN ('open', 'closed', 'merged'))
);
-- diff_url: search (case-insensitive exact match).
CREATE INDEX chat_diff_statuses_url_lower_idx ON chat_diff_statuses (lower(url)) WHERE url IS NOT NULL;

-- A chat as the API shows it: the row, its owner's names, has_unread and its diff status.
-- The joins are LEFT joins on unique keys, so a query that does not select their columns has them
-- removed by the planner (the list reads no users row per chat).
CREATE VIEW chats_expanded AS
SELECT c.*,
  u.username AS owner_username,
  u.name AS owner_name,
  -- An assistant message the owner has not seen: newer than the read cursor and not deleted.
  EXISTS (
    SELECT 1 FROM chat_messages m
    WHERE m.chat_id = c.id AND m.role = 'assistant' AND NOT m.deleted
      AND m.id > COALESCE(c.last_read_message_id, 0)
  ) AS has_unread,
  d.chat_id AS diff_chat_id,
  d.url AS diff_url,
  d.pull_request_state AS diff_pull_request_state,
  d.pull_request_title AS diff_pull_request_title,
  d.pull_request_draft AS diff_pull_request_draft,
  d.pr_number AS diff_pr_number,
  d.changes_requested AS diff_changes_requested,
  d.additions AS diff_additions,
  d.deletions AS diff_deletions,
  d.changed_files AS diff_changed_files,
  d.git_branch AS diff_git_branch,
  d.git_remote_origin AS diff_git_remote_origin,
  d.refreshed_at AS diff_refreshed_at,
  d.stale_at AS diff_stale_at
FROM chats c
LEFT JOIN users u ON u.id = c.owner_id
LEFT JOIN chat_diff_statuses d ON d.chat_id = c.id;

-- The built-in deterministic model: everything works offline, and it is the default.
WITH local AS (
  INSERT INTO chat_providers (provider, display_name) VALUES ('local', 'Local')
  RETURNING id
)
INSERT INTO chat_model_configs (provider_id, model, display_name, context_limit, is_default)
SELECT id, 'echo', 'Echo (local)', 128000, true FROM local;
