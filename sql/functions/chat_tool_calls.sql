-- Workspace tool calls (docs/api.md "Workspace tools"): the model's built-in tool calls that the
-- chat's workspace agent runs (`pgchatd agent`). The runner records them with the step that made
-- them (chat_run_save_tool_step, sql/functions/chat_runs.sql); the agent process starts each at
-- most once (chat_tool_call_start) and answers it (chat_tool_call_complete). A call that is not
-- answered by its deadline, whose turn ends first, or that was running when its agent process
-- restarted is closed with an error result instead, and never run again. Every closing stores the
-- call's tool-result message in the same transaction (the call is then settled), except while the
-- chat is archived (archived chats take no messages): the next turn stores those.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
--
-- WARNING (lock order, sql/functions/shared.sql): an agent's session row, then a chat row (FOR NO
-- KEY UPDATE), then that chat's call rows; several chats only in id order.

-- An agent is online while its stream refreshed it this recently: the stream does so every 15 s
-- (src/watch/streams.ts), so two missed refreshes (a slow server, a GC pause) are tolerated.
CREATE OR REPLACE FUNCTION workspace_agent_online_window() RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT interval '45 seconds' $$;

-- What a turn of p_chat needs to know of its workspace (GetChatForRunByID): whether its bound
-- agent is online (its stream is open and refreshed it within workspace_agent_online_window(); a
-- server that died with the stream open leaves it to go stale) and when it was last seen, and
-- whether tool calls of an earlier step are still unsettled (chat_tool_calls_unsettled_idx).
-- plpgsql for its cached plans, like chat_run_model_key.
CREATE OR REPLACE FUNCTION chat_run_agent_state(
  p_chat chats, OUT agent_online boolean, OUT agent_last_seen_at timestamptz,
  OUT unsettled_tool_calls boolean
)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  agent_online := false;
  IF p_chat.agent_id IS NOT NULL THEN
    SELECT s.last_seen_at, s.stream_id IS NOT NULL
      AND s.last_seen_at > now() - workspace_agent_online_window()
    INTO agent_last_seen_at, agent_online
    FROM workspace_agent_sessions s WHERE s.agent_id = p_chat.agent_id;
    agent_online := COALESCE(agent_online, false);
  END IF;
  unsettled_tool_calls := EXISTS (
    SELECT 1 FROM chat_tool_calls t WHERE t.chat_id = p_chat.id AND NOT t.settled);
END;
$$;

-- The tool-result part of a closed call, as the history stores it.
CREATE OR REPLACE FUNCTION chat_tool_call_result_part(p_call chat_tool_calls) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('type', 'tool-result', 'tool_call_id', p_call.tool_call_id,
    'tool_name', p_call.tool_name, 'result', p_call.result, 'is_error', p_call.is_error);
$$;

-- For a locked chat: stores the results of its closed, unsettled calls that the history still
-- waits for as one tool message (in call order), and settles every closed call. Nothing while the
-- chat is archived. Returns how many results it stored.
CREATE OR REPLACE FUNCTION chat_tool_calls_store_results(p_chat_id uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_parts jsonb;
BEGIN
  IF (SELECT archived FROM chats WHERE id = p_chat_id) THEN
    RETURN 0;
  END IF;
  SELECT jsonb_agg(chat_tool_call_result_part(t) ORDER BY t.id) INTO v_parts
  FROM chat_tool_calls t
  WHERE t.chat_id = p_chat_id AND NOT t.settled AND t.closed_at IS NOT NULL
    AND t.tool_call_id IN (SELECT p.tool_call_id FROM chat_pending_tool_calls(p_chat_id) p);
  IF v_parts IS NOT NULL THEN
    INSERT INTO chat_messages (chat_id, role, content, visibility)
    VALUES (p_chat_id, 'tool', v_parts, 'both');
  END IF;
  UPDATE chat_tool_calls SET settled = true
  WHERE chat_id = p_chat_id AND NOT settled AND closed_at IS NOT NULL;
  IF v_parts IS NOT NULL THEN
    -- The results replace the commands' streamed output (sql/functions/chat_stream_parts.sql);
    -- last: lock order 7 after the calls.
    PERFORM chat_stream_parts_saved(p_chat_id);
  END IF;
  RETURN COALESCE(jsonb_array_length(v_parts), 0);
END;
$$;

-- For a locked chat: closes its open calls (pending or running) as canceled, with p_reason as
-- their error result; the agent is told to stop (tool_call_canceled). Stores no message: the
-- caller does (chat_fail_pending_tool_calls), or the chat is being archived. Returns how many.
CREATE OR REPLACE FUNCTION chat_tool_calls_cancel(p_chat_id uuid, p_reason text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_count integer;
BEGIN
  UPDATE chat_tool_calls SET state = 'canceled', closed_at = now(), is_error = true,
    result = jsonb_build_object('error', p_reason)
  WHERE chat_id = p_chat_id AND NOT settled AND state IN ('pending', 'running');
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END;
$$;

-- POST /workspaceagents/me/sessions: a new agent process of p_agent_id. It replaces the previous
-- one: calls the previous process had started and not answered are closed as interrupted (their
-- error result says so; they are never run again) and their runners woken, and the previous
-- process can start nothing more (chat_tool_call_start checks the session). Returns the session id
-- and how many calls it interrupted.
CREATE OR REPLACE FUNCTION workspace_agent_session_start(
  p_agent_id uuid, OUT session_id uuid, OUT interrupted integer
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_chat_id uuid;
  v_count integer;
BEGIN
  workspace_agent_session_start.session_id := gen_random_uuid();
  interrupted := 0;
  INSERT INTO workspace_agent_sessions AS s (agent_id, session_id)
  VALUES (p_agent_id, workspace_agent_session_start.session_id)
  ON CONFLICT (agent_id) DO UPDATE SET session_id = excluded.session_id, started_at = now(),
    stream_id = NULL;
  -- The chats of its running calls, all locked first in id order; then every call closed; only
  -- then each chat's results stored (their stream locks, lock order 7, come after every chat row
  -- and call row this takes).
  PERFORM 1 FROM chats
  WHERE id IN (SELECT t.chat_id FROM chat_tool_calls t
    WHERE t.agent_id = p_agent_id AND t.state = 'running')
  ORDER BY id FOR NO KEY UPDATE;
  FOR v_chat_id, v_count IN
    WITH closed AS (
      UPDATE chat_tool_calls SET state = 'interrupted', closed_at = now(), is_error = true,
        result = jsonb_build_object('error',
          'interrupted: the workspace agent restarted while this call ran; it was not run again')
      WHERE agent_id = p_agent_id AND state = 'running'
      RETURNING chat_id
    )
    SELECT chat_id, count(*)::integer FROM closed GROUP BY chat_id ORDER BY chat_id
  LOOP
    interrupted := interrupted + v_count;
    PERFORM chat_tool_calls_store_results(v_chat_id);
    PERFORM pg_notify('chat_runner', 'tool:' || v_chat_id);
  END LOOP;
END;
$$;

-- POST /workspaceagents/me/tool-calls/{id}/start: the agent process p_session_id takes the call to
-- run it. Only one process can start it: the call must still be pending and the session the
-- agent's current one (the session row is read FOR SHARE, so a new process starting meanwhile
-- waits for this, then interrupts the call). The same session starting it again gets it again
-- (its first answer may have been lost on the way; the process runs a call once). PC404 for a
-- call of another agent, PC409 otherwise.
CREATE OR REPLACE FUNCTION chat_tool_call_start(p_agent_id uuid, p_session_id uuid, p_call_id bigint)
RETURNS chat_tool_calls
LANGUAGE plpgsql AS $$
DECLARE
  v_call chat_tool_calls;
BEGIN
  PERFORM 1 FROM workspace_agent_sessions
  WHERE agent_id = p_agent_id AND session_id = p_session_id FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'This agent session is not the current one.' USING ERRCODE = 'PC409',
      DETAIL = 'Another agent process started with this token; this one must stop.';
  END IF;
  SELECT * INTO v_call FROM chat_tool_calls WHERE id = p_call_id AND agent_id = p_agent_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Tool call not found.' USING ERRCODE = 'PC404';
  END IF;
  IF v_call.state = 'running' AND v_call.session_id = p_session_id THEN
    RETURN v_call;
  END IF;
  IF v_call.state <> 'pending' THEN
    RAISE EXCEPTION 'The tool call is not waiting to start.' USING ERRCODE = 'PC409',
      DETAIL = format('state is %s', v_call.state);
  END IF;
  UPDATE chat_tool_calls SET state = 'running', session_id = p_session_id, started_at = now()
  WHERE id = p_call_id
  RETURNING * INTO v_call;
  RETURN v_call;
END;
$$;

-- The agent's view of one of its calls (progress reports): PC404 for another agent's, PC409 when
-- it is no longer running for p_session_id (so the agent stops the command).
CREATE OR REPLACE FUNCTION chat_tool_call_require_running(
  p_agent_id uuid, p_session_id uuid, p_call_id bigint
) RETURNS chat_tool_calls
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_call chat_tool_calls;
BEGIN
  SELECT * INTO v_call FROM chat_tool_calls WHERE id = p_call_id AND agent_id = p_agent_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Tool call not found.' USING ERRCODE = 'PC404';
  END IF;
  IF v_call.state <> 'running' OR v_call.session_id IS DISTINCT FROM p_session_id THEN
    RAISE EXCEPTION 'The tool call is no longer awaited.' USING ERRCODE = 'PC409',
      DETAIL = format('state is %s', v_call.state);
  END IF;
  RETURN v_call;
END;
$$;

-- POST /workspaceagents/me/tool-calls/{id}/result: the answer of the process that started the
-- call. The first answer wins: a call that closed meanwhile (timed out, canceled, interrupted) or
-- was answered already is PC409 and keeps its result. Stores the tool-result message and wakes
-- the runner waiting for it, in this transaction.
CREATE OR REPLACE FUNCTION chat_tool_call_complete(
  p_agent_id uuid, p_session_id uuid, p_call_id bigint, p_result jsonb, p_is_error boolean
) RETURNS chat_tool_calls
LANGUAGE plpgsql AS $$
DECLARE
  v_chat_id uuid;
  v_call chat_tool_calls;
BEGIN
  SELECT chat_id INTO v_chat_id FROM chat_tool_calls WHERE id = p_call_id AND agent_id = p_agent_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Tool call not found.' USING ERRCODE = 'PC404';
  END IF;
  PERFORM 1 FROM chats WHERE id = v_chat_id FOR NO KEY UPDATE;
  v_call := chat_tool_call_require_running(p_agent_id, p_session_id, p_call_id);
  UPDATE chat_tool_calls SET state = 'completed', closed_at = now(), result = p_result,
    is_error = p_is_error
  WHERE id = p_call_id AND state = 'running'
  RETURNING * INTO v_call;
  PERFORM chat_tool_calls_store_results(v_chat_id);
  PERFORM pg_notify('chat_runner', 'tool:' || v_chat_id);
  RETURN v_call;
END;
$$;

-- The runner of a chat's turn, before each model call while the turn has unsettled calls: under
-- the lease (like chat_run_save_step; `held` false when the turn was stopped or taken away),
-- closes the calls past their deadline as timed_out, stores the results no message holds yet, and
-- says how many calls are still open, the earliest deadline among them and, once none is open,
-- how many of the step's calls still wait for an answer (the client's: the turn then ends in
-- requires_action).
CREATE OR REPLACE FUNCTION chat_run_settle_tool_calls(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz,
  OUT held boolean, OUT open_calls integer, OUT next_deadline_at timestamptz,
  OUT unanswered_calls integer
)
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  v_chat := chat_run_lock_lease(p_chat_id, p_worker_id, p_started_at);
  held := v_chat.id IS NOT NULL AND v_chat.status = 'running' AND NOT v_chat.archived;
  open_calls := 0;
  unanswered_calls := 0;
  IF NOT held THEN
    RETURN;
  END IF;
  UPDATE chat_tool_calls SET state = 'timed_out', closed_at = now(), is_error = true,
    result = jsonb_build_object('error', format(
      'timed out: the workspace agent did not answer within %s seconds',
      trim_scale(round(extract(epoch FROM deadline_at - created_at), 1))))
  WHERE chat_id = p_chat_id AND NOT settled AND state IN ('pending', 'running')
    AND deadline_at <= now();
  PERFORM chat_tool_calls_store_results(p_chat_id);
  SELECT count(*), min(deadline_at) INTO open_calls, next_deadline_at
  FROM chat_tool_calls WHERE chat_id = p_chat_id AND NOT settled;
  IF open_calls = 0 THEN
    SELECT count(*) INTO unanswered_calls FROM chat_pending_tool_calls(p_chat_id);
  END IF;
END;
$$;
