-- Identity and workspaces: who may call the API, which organizations they belong to, and the
-- workspaces (with builds and agents) that chats bind to.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- Site-wide roles. `owner` administers everything; every user is implicitly a member.
CREATE TYPE site_role AS ENUM ('owner', 'member');

CREATE TABLE organizations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT organizations_name_format CHECK (
    name ~ '^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$' AND length(name) <= 64
  )
);
-- Names are unique ignoring case, so "Acme" and "acme" cannot both exist.
CREATE UNIQUE INDEX organizations_name_key ON organizations (lower(name));

CREATE TABLE users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username text NOT NULL,
  name text NOT NULL DEFAULT '',
  email text,
  roles site_role[] NOT NULL DEFAULT '{member}',
  -- Per-user spend limit override (micros); NULL falls back to groups and the default.
  chat_spend_limit_micros bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_username_format CHECK (
    username ~ '^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$' AND length(username) <= 32
  ),
  CONSTRAINT users_name_length CHECK (length(name) <= 128),
  CONSTRAINT users_email_length CHECK (length(email) <= 320),
  CONSTRAINT users_chat_spend_limit_nonnegative CHECK (chat_spend_limit_micros >= 0)
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE organization_members (
  organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, user_id)
);
-- "Which organizations is this user in" runs on every authenticated request.
CREATE INDEX organization_members_user_id_idx ON organization_members (user_id, created_at);

CREATE TABLE groups (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name text NOT NULL,
  -- Spend limit for members of this group (micros); the smallest of a user's groups applies.
  chat_spend_limit_micros bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT groups_name_length CHECK (length(name) BETWEEN 1 AND 64),
  CONSTRAINT groups_chat_spend_limit_nonnegative CHECK (chat_spend_limit_micros >= 0),
  -- Target of group_members' composite key, which ties a member to the group's organization.
  CONSTRAINT groups_id_organization_key UNIQUE (id, organization_id)
);
CREATE UNIQUE INDEX groups_organization_name_key ON groups (organization_id, lower(name));

-- A group member must be a member of the group's organization; the composite foreign keys hold
-- that without a trigger, and leaving the organization removes the user from its groups.
CREATE TABLE group_members (
  group_id uuid NOT NULL,
  organization_id uuid NOT NULL,
  user_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, user_id),
  CONSTRAINT group_members_group_fkey FOREIGN KEY (group_id, organization_id)
    REFERENCES groups (id, organization_id) ON DELETE CASCADE,
  CONSTRAINT group_members_organization_member_fkey FOREIGN KEY (organization_id, user_id)
    REFERENCES organization_members (organization_id, user_id) ON DELETE CASCADE
);
-- Spend-limit resolution looks up a user's groups within one organization.
CREATE INDEX group_members_user_id_idx ON group_members (user_id, organization_id);

-- API keys are `<id>-<secret>`; only a SHA-256 of the secret is stored. The secret is random
-- (at least 128 bits), so a fast hash is enough: there is nothing to brute-force.
CREATE TABLE api_keys (
  id text PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  hashed_secret bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- NULL never expires (the bootstrap key); otherwise the key is refused from this instant on.
  expires_at timestamptz,
  last_used_at timestamptz,
  CONSTRAINT api_keys_id_format CHECK (id ~ '^[a-z0-9]{10}$'),
  CONSTRAINT api_keys_hashed_secret_length CHECK (octet_length(hashed_secret) = 32)
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE workspaces (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id uuid NOT NULL,
  owner_id uuid NOT NULL,
  name text NOT NULL,
  -- Incremented by each new build under the row lock, so concurrent builds get distinct numbers.
  latest_build_number integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT workspaces_name_format CHECK (
    name ~ '^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$' AND length(name) <= 64
  ),
  CONSTRAINT workspaces_owner_membership_fkey FOREIGN KEY (organization_id, owner_id)
    REFERENCES organization_members (organization_id, user_id)
);
CREATE UNIQUE INDEX workspaces_owner_name_key ON workspaces (owner_id, lower(name));
CREATE INDEX workspaces_organization_id_idx ON workspaces (organization_id);

-- A build is one version of a workspace; the newest build (highest number) supersedes the others
-- and its agents are the ones chats bind to.
CREATE TABLE workspace_builds (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  build_number integer NOT NULL,
  created_by uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT workspace_builds_number_key UNIQUE (workspace_id, build_number)
);

-- Agents authenticate with `<token_id>-<secret>`; only a SHA-256 of the secret is stored.
CREATE TABLE workspace_agents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  build_id uuid NOT NULL REFERENCES workspace_builds (id) ON DELETE CASCADE,
  name text NOT NULL,
  -- Position of the agent in its build; "the first agent" of a build is ordinal 0.
  ordinal integer NOT NULL,
  token_id text NOT NULL,
  hashed_token bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT workspace_agents_name_format CHECK (
    name ~ '^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$' AND length(name) <= 64
  ),
  CONSTRAINT workspace_agents_token_id_key UNIQUE (token_id),
  CONSTRAINT workspace_agents_build_name_key UNIQUE (build_id, name),
  CONSTRAINT workspace_agents_build_ordinal_key UNIQUE (build_id, ordinal),
  CONSTRAINT workspace_agents_hashed_token_length CHECK (octet_length(hashed_token) = 32)
);
