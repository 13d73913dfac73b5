-- Turn lifecycle rules: send, edit, tool results, interrupt (the queue: chat_queue.sql).
-- Every transition locks the chat row first (chat_lock_for_owner), so concurrent requests on one
-- chat serialise; each public function is one transaction from its caller's point of view.

-- The text of a user message for the prompt history: its text parts joined verbatim in authored
-- order; NULL when the content is not a JSON array or the text is blank.
CREATE OR REPLACE FUNCTION chat_prompt_text(p_content jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN joined ~ '\S' THEN joined END
  FROM (
    SELECT string_agg(part ->> 'text', '' ORDER BY n) AS joined
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_content) = 'array' THEN p_content ELSE '[]' END)
      WITH ORDINALITY AS e(part, n)
    WHERE part ->> 'type' = 'text'
  ) t;
$$;

-- The client tool calls the chat waits for: tool-call parts of its newest assistant message
-- that no later tool message answers, in the order the model made them.
CREATE OR REPLACE FUNCTION chat_pending_tool_calls(p_chat_id uuid)
RETURNS TABLE (tool_call_id text, tool_name text, args jsonb)
LANGUAGE sql STABLE AS $$
  WITH last_assistant AS (
    SELECT m.id, m.content
    FROM chat_messages m
    WHERE m.chat_id = p_chat_id AND m.role = 'assistant' AND NOT m.deleted
    ORDER BY m.id DESC
    LIMIT 1
  )
  SELECT part ->> 'tool_call_id', part ->> 'tool_name', COALESCE(part -> 'args', '{}')
  FROM last_assistant a,
    jsonb_array_elements(CASE WHEN jsonb_typeof(a.content) = 'array' THEN a.content ELSE '[]' END)
      WITH ORDINALITY AS e(part, n)
  WHERE part ->> 'type' = 'tool-call'
    AND NOT EXISTS (
      SELECT 1
      FROM chat_messages r,
        jsonb_array_elements(CASE WHEN jsonb_typeof(r.content) = 'array' THEN r.content ELSE '[]' END) rp
      WHERE r.chat_id = p_chat_id AND r.id > a.id AND r.role = 'tool' AND NOT r.deleted
        AND rp ->> 'type' = 'tool-result' AND rp ->> 'tool_call_id' = part ->> 'tool_call_id'
    )
  ORDER BY n;
$$;

-- The pending client tool calls as an action_required payload: [{tool_call_id, tool_name, args}].
CREATE OR REPLACE FUNCTION chat_events_tool_calls(p_chat_id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT COALESCE(jsonb_agg(jsonb_build_object(
    'tool_call_id', t.tool_call_id, 'tool_name', t.tool_name, 'args', t.args)), '[]')
  FROM chat_pending_tool_calls(p_chat_id) t;
$$;

-- Answers every pending tool call with an error result (interrupt, promote, timeout) in one tool
-- message. Workspace tool calls still open are closed first (their agent is told to stop), and
-- every call of the chat is settled: the history answers them now, or moved past them (an edit).
-- Returns how many calls it answered.
CREATE OR REPLACE FUNCTION chat_fail_pending_tool_calls(p_chat_id uuid, p_reason text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_parts jsonb;
  v_workspace_calls boolean;
BEGIN
  v_workspace_calls := EXISTS (SELECT 1 FROM chat_tool_calls WHERE chat_id = p_chat_id AND NOT settled);
  IF v_workspace_calls THEN
    PERFORM chat_tool_calls_cancel(p_chat_id, p_reason);
  END IF;
  SELECT jsonb_agg(jsonb_build_object(
      'type', 'tool-result', 'tool_call_id', c.tool_call_id, 'tool_name', c.tool_name,
      'result', jsonb_build_object('error', p_reason), 'is_error', true))
  INTO v_parts
  FROM chat_pending_tool_calls(p_chat_id) c;
  IF v_parts IS NOT NULL THEN
    INSERT INTO chat_messages (chat_id, role, content, visibility) VALUES (p_chat_id, 'tool', v_parts, 'both');
  END IF;
  IF v_workspace_calls THEN
    UPDATE chat_tool_calls SET settled = true WHERE chat_id = p_chat_id AND NOT settled;
  END IF;
  -- The results (or an edit that drops the step) replace the commands' streamed output; last:
  -- lock order 7 after the calls.
  PERFORM chat_stream_parts_saved(p_chat_id);
  RETURN COALESCE(jsonb_array_length(v_parts), 0);
END;
$$;

-- Admits a user message into a locked chat: stores it and starts a turn (status pending). The
-- message's model becomes the chat's model in the same transaction (model switch). Audited as
-- message_send with the key that sent it (a promoted queued message: the key that queued it).
-- A new turn ends the previous run's right to write: the lease is released in the same UPDATE
-- (a run still holding it, e.g. one an edit superseded, finds it gone and writes nothing;
-- chats__notify_runner tells it to stop). Tool calls the history still leaves unanswered (an
-- archived chat interrupted in requires_action could not store their results) get error results
-- first, so the model never sees a call without its result.
CREATE OR REPLACE FUNCTION chat_admit_message(
  p_chat_id uuid, p_content jsonb, p_model_config_id uuid, p_created_by uuid, p_api_key_id text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
BEGIN
  PERFORM chat_fail_pending_tool_calls(p_chat_id, 'interrupted');
  -- Status first: the status change moves updated_at, so the message's touch trigger finds the
  -- chat already touched and skips its own UPDATE. One chat update and one status_change event
  -- per send, instead of an `updated` followed by a status_change.
  -- status: waiting/error (a send, a promotion, the queue head), any (an edit) -> pending (docs/sql.md "Chat status").
  UPDATE chats SET status = 'pending', last_model_config_id = p_model_config_id,
    worker_id = NULL, heartbeat_at = NULL
  WHERE id = p_chat_id;
  INSERT INTO chat_messages (chat_id, role, content, visibility, model_config_id, created_by, api_key_id)
  VALUES (p_chat_id, 'user', p_content, 'both', p_model_config_id, p_created_by, p_api_key_id)
  RETURNING id INTO v_id;
  INSERT INTO audit_logs (actor_user_id, api_key_id, action, chat_id, detail)
  VALUES (p_created_by, p_api_key_id, 'message_send', p_chat_id, jsonb_build_object('message_id', v_id));
  RETURN v_id;
END;
$$;

-- Stops the current turn of a locked chat: pending, running and requires_action become waiting
-- (a runner holding the chat sees the status change and stops, keeping its partial output, and
-- its turn's end answers the calls left open). Pending calls get error results here when nobody
-- else would answer them: requires_action's (the client's), and the workspace calls of a turn no
-- runner holds (handed back to pending by a shutdown or a stale lease). When no runner holds the
-- chat, the head of the queue is admitted at once, as the runner would do at the end of its turn.
-- An archived chat only stops: it takes no message (the results are written when a later turn
-- starts, chat_admit_message) and admits nothing.
CREATE OR REPLACE FUNCTION chat_interrupt_locked(p_chat chats) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT p_chat.archived AND (p_chat.status = 'requires_action' OR p_chat.worker_id IS NULL) THEN
    PERFORM chat_fail_pending_tool_calls(p_chat.id, 'interrupted');
  END IF;
  -- status: pending/running/requires_action -> waiting (an interrupt) (docs/sql.md "Chat status").
  IF p_chat.status IN ('pending', 'running', 'requires_action') THEN
    UPDATE chats SET status = 'waiting' WHERE id = p_chat.id;
  END IF;
  IF p_chat.worker_id IS NULL THEN
    PERFORM chat_admit_queue_head(p_chat);
  END IF;
END;
$$;

-- POST /{chat}/messages. Queued (FIFO, at most chat_queue_limit()) while the chat is pending,
-- running or requires_action, leased to a runner, or while its queue is not empty; otherwise
-- admitted now (a runner admits the queue head when its turn ends).
-- p_busy_behavior 'interrupt' queues and then stops the current turn.
CREATE OR REPLACE FUNCTION chat_send_message(
  p_chat_id uuid, p_owner_id uuid, p_content jsonb, p_model_config_id uuid,
  p_busy_behavior text, p_api_key_id text,
  OUT message_id bigint, OUT queued_message_id bigint
)
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_model uuid;
  v_queued integer;
BEGIN
  v_chat := chat_lock_for_owner(p_chat_id, p_owner_id);
  PERFORM chat_require_writable(v_chat);
  -- Queued or admitted, a send is refused at the spend limit (docs/api.md "Spend limits").
  PERFORM chat_require_spend_under_limit(p_owner_id, v_chat.organization_id);
  IF p_model_config_id IS NOT NULL THEN
    v_model := chat_resolve_model(p_model_config_id);
  ELSE
    -- The chat's model, or the default only when the chat's is no longer usable (resolving the
    -- default eagerly would fail every send while no default is configured).
    v_model := COALESCE(chat_usable_model(v_chat.last_model_config_id, NULL), chat_resolve_model(NULL));
  END IF;
  PERFORM chat_link_files(p_chat_id, p_owner_id, p_content);
  SELECT count(*) INTO v_queued FROM chat_queued_messages WHERE chat_id = p_chat_id;
  -- A chat still leased to a runner (worker_id) is busy too, whatever its status: an interrupted
  -- turn's runner is about to save its partial output, and this message must come after it.
  IF v_chat.status NOT IN ('pending', 'running', 'requires_action') AND v_queued = 0
     AND v_chat.worker_id IS NULL THEN
    message_id := chat_admit_message(p_chat_id, p_content, v_model, p_owner_id, p_api_key_id);
    RETURN;
  END IF;
  IF v_queued >= chat_queue_limit() THEN
    RAISE EXCEPTION 'The queue is full.' USING ERRCODE = 'PC429',
      DETAIL = format('A chat queues at most %s messages; wait for the current turn.', chat_queue_limit());
  END IF;
  INSERT INTO chat_queued_messages (chat_id, content, model_config_id, created_by, api_key_id, position)
  VALUES (p_chat_id, p_content, v_model, p_owner_id, p_api_key_id,
    COALESCE((SELECT max(position) FROM chat_queued_messages WHERE chat_id = p_chat_id), 0) + 1)
  RETURNING id INTO queued_message_id;
  INSERT INTO audit_logs (actor_user_id, api_key_id, action, chat_id, detail)
  VALUES (p_owner_id, p_api_key_id, 'message_queue', p_chat_id,
    jsonb_build_object('queued_message_id', queued_message_id));
  IF p_busy_behavior = 'interrupt' THEN
    PERFORM chat_interrupt_locked(v_chat);
    IF NOT EXISTS (SELECT 1 FROM chat_queued_messages WHERE id = queued_message_id) THEN
      -- This message was the head and the interrupt admitted it: it is the newest user message.
      SELECT max(id) INTO message_id FROM chat_messages WHERE chat_id = p_chat_id AND role = 'user';
      queued_message_id := NULL;
    END IF;
  END IF;
END;
$$;

-- PATCH /{chat}/messages/{message}: replaces a user message. The message and every later one
-- are soft-deleted, the replacement is stored, the queue is cleared and a new turn starts.
-- Returns the replacement's id and the ids that were deleted. The new turn runs on
-- p_model_config_id when given, else on the edited message's model while it is usable.
CREATE OR REPLACE FUNCTION chat_edit_message(
  p_chat_id uuid, p_owner_id uuid, p_message_id bigint, p_content jsonb, p_api_key_id text,
  p_model_config_id uuid, OUT message_id bigint, OUT deleted_message_ids bigint[]
)
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_message chat_messages;
BEGIN
  v_chat := chat_lock_for_owner(p_chat_id, p_owner_id);
  PERFORM chat_require_writable(v_chat);
  -- Only messages the client can see: a model-only message (context files, the system prompt)
  -- looks missing, as it does in GET /messages.
  SELECT * INTO v_message FROM chat_messages
  WHERE id = p_message_id AND chat_id = p_chat_id AND NOT deleted AND visibility <> 'model';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Message not found.' USING ERRCODE = 'PC404';
  END IF;
  IF v_message.role <> 'user' THEN
    RAISE EXCEPTION 'Only user messages can be edited.' USING ERRCODE = 'PC400',
      DETAIL = format('message %s is a %s message', p_message_id, v_message.role);
  END IF;
  WITH gone AS (
    UPDATE chat_messages SET deleted = true
    WHERE chat_id = p_chat_id AND id >= p_message_id AND NOT deleted
    RETURNING id
  )
  SELECT COALESCE(array_agg(id ORDER BY id), '{}') INTO deleted_message_ids FROM gone;
  DELETE FROM chat_queued_messages WHERE chat_id = p_chat_id;
  PERFORM chat_link_files(p_chat_id, p_owner_id, p_content);
  message_id := chat_admit_message(
    p_chat_id, p_content,
    CASE WHEN p_model_config_id IS NOT NULL THEN chat_resolve_model(p_model_config_id)
      ELSE chat_usable_model(v_message.model_config_id, v_chat.last_model_config_id) END,
    p_owner_id, p_api_key_id);
END;
$$;

-- The signature before model_config_id, for servers of the previous release during an upgrade.
CREATE OR REPLACE FUNCTION chat_edit_message(
  p_chat_id uuid, p_owner_id uuid, p_message_id bigint, p_content jsonb, p_api_key_id text,
  OUT message_id bigint, OUT deleted_message_ids bigint[]
)
LANGUAGE sql AS $$
  SELECT * FROM chat_edit_message(p_chat_id, p_owner_id, p_message_id, p_content, p_api_key_id, NULL);
$$;

-- POST /{chat}/tool-results: the results must name exactly the pending call ids (none missing,
-- none extra, none twice). Stores them as one tool message and starts a turn. The first valid
-- submission wins; later or concurrent ones find the chat no longer waiting (PC409).
-- p_results: [{tool_call_id, output, is_error}].
CREATE OR REPLACE FUNCTION chat_submit_tool_results(
  p_chat_id uuid, p_owner_id uuid, p_results jsonb, p_api_key_id text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_pending text[];
  v_given text[];
  v_missing text[];
  v_extra text[];
  v_id bigint;
BEGIN
  v_chat := chat_lock_for_owner(p_chat_id, p_owner_id);
  PERFORM chat_require_writable(v_chat);
  IF v_chat.status <> 'requires_action' THEN
    RAISE EXCEPTION 'The chat is not waiting for tool results.' USING ERRCODE = 'PC409',
      DETAIL = format('status is %s', v_chat.status);
  END IF;
  SELECT COALESCE(array_agg(tool_call_id), '{}') INTO v_pending FROM chat_pending_tool_calls(p_chat_id);
  IF cardinality(v_pending) = 0 THEN
    RAISE EXCEPTION 'The chat has no pending tool calls.' USING ERRCODE = 'PC409';
  END IF;
  SELECT COALESCE(array_agg(r ->> 'tool_call_id'), '{}') INTO v_given FROM jsonb_array_elements(p_results) r;
  IF cardinality(v_given) <> (SELECT count(DISTINCT g) FROM unnest(v_given) g) THEN
    RAISE EXCEPTION 'A tool_call_id is given more than once.' USING ERRCODE = 'PC400';
  END IF;
  SELECT COALESCE(array_agg(p), '{}') INTO v_missing FROM unnest(v_pending) p WHERE p <> ALL (v_given);
  SELECT COALESCE(array_agg(g), '{}') INTO v_extra FROM unnest(v_given) g WHERE g <> ALL (v_pending);
  IF cardinality(v_missing) > 0 OR cardinality(v_extra) > 0 THEN
    RAISE EXCEPTION 'The tool results must answer exactly the pending tool calls.' USING ERRCODE = 'PC400',
      DETAIL = format('pending: %s; missing: %s; not pending: %s',
        array_to_string(v_pending, ', '), array_to_string(v_missing, ', '), array_to_string(v_extra, ', '));
  END IF;
  INSERT INTO chat_messages (chat_id, role, content, visibility, created_by, api_key_id)
  SELECT p_chat_id, 'tool',
    jsonb_agg(jsonb_build_object(
      'type', 'tool-result', 'tool_call_id', c.tool_call_id, 'tool_name', c.tool_name,
      'result', r -> 'output', 'is_error', COALESCE((r ->> 'is_error')::boolean, false)) ORDER BY c.ord),
    'both', p_owner_id, p_api_key_id
  FROM (SELECT t.*, row_number() OVER () AS ord FROM chat_pending_tool_calls(p_chat_id) t) c
  JOIN jsonb_array_elements(p_results) r ON r ->> 'tool_call_id' = c.tool_call_id
  RETURNING id INTO v_id;
  INSERT INTO audit_logs (actor_user_id, api_key_id, action, chat_id, detail)
  VALUES (p_owner_id, p_api_key_id, 'tool_results', p_chat_id, jsonb_build_object('message_id', v_id));
  -- status: requires_action -> pending (the tool results) (docs/sql.md "Chat status").
  UPDATE chats SET status = 'pending' WHERE id = p_chat_id;
  RETURN v_id;
END;
$$;

-- POST /{chat}/interrupt.
CREATE OR REPLACE FUNCTION chat_interrupt(p_chat_id uuid, p_owner_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_interrupt_locked(chat_lock_for_owner(p_chat_id, p_owner_id));
END;
$$;
