-- Workspace context pinning: agents push context snapshots (instruction files, skills, MCP
-- config), chats pin a copy, a push marks chats pinned to older content dirty; and the audit log.
-- Rules live in sql/functions/chat_context.sql and sql/triggers/workspace_agent_contexts.sql.
-- The chat columns (context_aggregate_hash, context_dirty_since, context_dirty_resources,
-- context_error) exist since 00002.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

CREATE TYPE context_resource_kind AS ENUM ('instruction_file', 'skill', 'mcp_config');
-- How the agent could read a resource: only 'ok' ones have a body the model sees.
CREATE TYPE context_resource_status AS ENUM ('ok', 'oversize', 'unreadable', 'invalid', 'excluded');

-- An agent's latest snapshot. One row per agent; its row lock is what orders a push against chats
-- pinning or hydrating from it (see chat_context_pin).
CREATE TABLE workspace_agent_contexts (
  agent_id uuid PRIMARY KEY REFERENCES workspace_agents (id) ON DELETE CASCADE,
  -- sha256 over the sorted content hashes of the resources (chat_context_aggregate_hash).
  aggregate_hash text NOT NULL,
  -- Increases with every push that changed the aggregate hash.
  version bigint NOT NULL DEFAULT 1,
  -- What the agent reported as a whole (e.g. "could not read the skills directory").
  error text,
  -- The last push, identical ones included.
  received_at timestamptz NOT NULL DEFAULT now()
);

-- Columns shared by an agent's resources and a chat's pinned copies.
CREATE TABLE workspace_agent_context_resources (
  agent_id uuid NOT NULL REFERENCES workspace_agent_contexts (agent_id) ON DELETE CASCADE,
  -- Where the agent read it (a path, "mcp.json"): unique per snapshot.
  source text NOT NULL,
  kind context_resource_kind NOT NULL,
  body text NOT NULL,
  -- sha256 of kind, source, status and body (chat_context_resource_hash): equal means unchanged.
  content_hash text NOT NULL,
  -- Octets of the body.
  size integer NOT NULL,
  status context_resource_status NOT NULL,
  error text,
  PRIMARY KEY (agent_id, source)
);

-- A chat's pinned copy of its agent's snapshot. No reference to the agent: the copy stays when the
-- agent goes away (a newer build, a deleted workspace), so the chat keeps its context.
CREATE TABLE chat_context_resources (
  chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
  source text NOT NULL,
  kind context_resource_kind NOT NULL,
  body text NOT NULL,
  content_hash text NOT NULL,
  size integer NOT NULL,
  status context_resource_status NOT NULL,
  error text,
  PRIMARY KEY (chat_id, source)
);

-- Chats bound to an agent that a push can concern (dirty marking: one index range per push) and
-- an agent's active chats (chat-context without a chat_id).
CREATE INDEX chats_agent_id_idx ON chats (agent_id) WHERE agent_id IS NOT NULL AND NOT archived;

-- Who did what to which chat or agent, and when: context pushes, pins, hydrations, dirty
-- markings, context files, archive and unarchive. Written by the rule functions in the
-- transaction of the change (a rolled-back change leaves no entry). No foreign keys: entries
-- outlive what they name.
CREATE TABLE audit_logs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  time timestamptz NOT NULL DEFAULT now(),
  -- Exactly one actor: a user, an agent, or the server itself (the runner hydrating at a turn).
  actor_user_id uuid,
  actor_agent_id uuid,
  action text NOT NULL,
  chat_id uuid,
  agent_id uuid,
  detail jsonb,
  CONSTRAINT audit_logs_one_actor CHECK (num_nonnulls(actor_user_id, actor_agent_id) <= 1),
  CONSTRAINT audit_logs_action CHECK (action IN (
    'context_push', 'context_pin', 'context_hydrate', 'context_dirty',
    'chat_context_add', 'chat_context_clear', 'chat_archive', 'chat_unarchive'
  ))
);
-- A chat's history of changes, and an agent's.
CREATE INDEX audit_logs_chat_id_idx ON audit_logs (chat_id, id) WHERE chat_id IS NOT NULL;
CREATE INDEX audit_logs_agent_id_idx ON audit_logs (agent_id, id) WHERE agent_id IS NOT NULL;
