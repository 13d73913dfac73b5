-- Workspace tool calls (docs/api.md "Workspace tools"; the rules: sql/functions/chat_tool_calls.sql).
-- Forward-only: never edit this file once it has landed; add a new migration instead.

--   pending -> running (the agent started it) -> completed (the agent answered);
--   pending/running -> timed_out (no answer by the deadline), canceled (the turn ended: interrupt,
--   edit, archive, turn end), interrupted (running when its agent process restarted: never re-run).
CREATE TYPE chat_tool_call_state AS ENUM (
  'pending', 'running', 'completed', 'timed_out', 'canceled', 'interrupted'
);

-- One built-in tool call of the model that the chat's workspace agent runs. Recorded in the
-- transaction that stores the assistant message with the call; its result becomes a tool message
-- of the chat when it closes.
CREATE TABLE chat_tool_calls (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
  -- The agent the chat was bound to when the model made the call. NULL once the agent is gone
  -- (its workspace deleted): nobody can start the call, and it times out.
  agent_id uuid REFERENCES workspace_agents (id) ON DELETE SET NULL,
  -- The model's id of the call. Not unique: some providers number calls per response ("call_0"),
  -- and only the calls of a chat's current step are ever unsettled.
  tool_call_id text NOT NULL,
  tool_name text NOT NULL,
  args jsonb NOT NULL,
  state chat_tool_call_state NOT NULL DEFAULT 'pending',
  -- The agent process (workspace_agent_sessions.session_id) that started it.
  session_id uuid,
  -- What the model is told (the agent's answer, or an error saying why there is none).
  result jsonb,
  is_error boolean NOT NULL DEFAULT false,
  -- The result is in the chat's history, or the history no longer waits for it (an edit, a new
  -- turn): nothing is left to do. False after closing only while the chat is archived (archived
  -- chats take no messages); the next turn stores the result.
  settled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  -- A call not answered by then is closed as timed_out.
  deadline_at timestamptz NOT NULL,
  closed_at timestamptz,
  CONSTRAINT chat_tool_calls_closed_at CHECK ((state IN ('pending', 'running')) = (closed_at IS NULL)),
  -- Started calls name the process that started them; a call still to start names none.
  CONSTRAINT chat_tool_calls_session CHECK (
    CASE state WHEN 'pending' THEN session_id IS NULL
      WHEN 'running' THEN session_id IS NOT NULL
      WHEN 'completed' THEN session_id IS NOT NULL
      WHEN 'interrupted' THEN session_id IS NOT NULL
      ELSE true END),
  CONSTRAINT chat_tool_calls_settled_closed CHECK (NOT settled OR closed_at IS NOT NULL)
);
-- A chat's calls (its deletion cascades through this index).
CREATE INDEX chat_tool_calls_chat_id_idx ON chat_tool_calls (chat_id, id);
-- The runner: a chat's calls whose result it still waits for or must store. Few rows at any time.
CREATE INDEX chat_tool_calls_unsettled_idx ON chat_tool_calls (chat_id) WHERE NOT settled;
-- The agent: its calls to start (the stream's snapshot) and those it runs (a new agent process
-- interrupts them); also the agent's deletion (SET NULL).
CREATE INDEX chat_tool_calls_agent_idx ON chat_tool_calls (agent_id, state, id);

-- The agent process now running for an agent (`pgchatd agent`), and its stream: one row per
-- agent, replaced when a new process starts.
CREATE TABLE workspace_agent_sessions (
  agent_id uuid PRIMARY KEY REFERENCES workspace_agents (id) ON DELETE CASCADE,
  session_id uuid NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  -- The open stream connection that refreshed last_seen_at last; NULL once it closed (unless a
  -- newer connection took over). A server that dies with it open leaves last_seen_at to go stale.
  stream_id uuid,
  -- The agent is online while its stream is open and this is recent (docs/api.md "Workspace tools").
  last_seen_at timestamptz
);
