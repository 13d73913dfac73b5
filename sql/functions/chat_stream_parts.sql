-- The in-flight output of running turns (table: sql/schema/00061_chat_stream_parts.sql; the
-- stream rules: docs/api.md "Chat stream events").

-- The id of the chat's current run of a turn, as message_part events show it (`turn_id`): its
-- lease's start in microseconds. A turn that runs again (another runner after a crash or a
-- shutdown) gets a new one, so a client can drop what the lost run streamed.
CREATE OR REPLACE FUNCTION chat_stream_turn_id(p_started_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT (extract(epoch FROM p_started_at) * 1000000)::bigint::text;
$$;

-- Publishes one chat stream event (message_part, retry): stores it as in-flight output and
-- NOTIFYs chat_message_parts with it, in one transaction, so a stream that reads the table after it
-- registered misses nothing published before. One publisher of a chat at a time (the chat's
-- stream lock, lock order 7, held to commit): seqs follow commit order per chat, which is also the
-- order every process receives the NOTIFYs in, so whatever a stream receives after its read
-- carries a higher seq than everything it read. p_data is the event's JSON object as text, one
-- line (kept as written: jsonb would reorder it and refuse \u0000); turn_id and seq are added at
-- its end. Who may publish:
--   p_worker_id/p_started_at: a runner, while that lease holds and the chat runs unarchived (a
--     run that lost it publishes nothing: its output would mix with the next run's);
--   p_call_id: the agent's command output of that workspace call of the chat, while the call
--     runs and the chat is unarchived (the call's row FOR SHARE first: its result's
--     chat_tool_call_complete waits for this publication, or this one finds the call closed).
--     A restarted turn's new run waits for the same call, so its output stays in flight across
--     the restart. Only message_part: a retry is the runner's.
-- A retry first marks the run's parts before it saved. Returns NULLs when nothing was published,
-- else the event's turn_id, seq and SSE block, and the chat's owner.
CREATE OR REPLACE FUNCTION chat_stream_publish(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz, p_call_id bigint,
  p_event text, p_data text, OUT turn_id text, OUT seq bigint, OUT body text, OUT owner_id uuid
)
LANGUAGE plpgsql AS $$
DECLARE
  v_started timestamptz;
BEGIN
  IF p_event IS NULL OR p_event NOT IN ('message_part', 'retry') THEN
    RAISE EXCEPTION 'Not a stream event: %.', p_event USING ERRCODE = '22023';
  END IF;
  -- One line of SSE data, a non-empty JSON object: checked on the text (the json cast checks
  -- the syntax and keeps \u0000, which every operator reading the values would refuse).
  IF p_data IS NULL OR left(p_data, 1) <> '{' OR right(p_data, 1) <> '}' OR p_data ~ '[\r\n]'
     OR p_data ~ '^\{\s*\}$' OR json_typeof(p_data::json) <> 'object' THEN
    RAISE EXCEPTION 'A stream event''s data must be one line of a non-empty JSON object.'
      USING ERRCODE = '22023';
  END IF;
  IF (p_worker_id IS NULL) = (p_call_id IS NULL) OR (p_call_id IS NOT NULL AND p_event <> 'message_part') THEN
    RAISE EXCEPTION 'A runner publishes under its lease, the agent a running call''s output.'
      USING ERRCODE = '22023';
  END IF;
  IF p_call_id IS NOT NULL THEN
    PERFORM 1 FROM chat_tool_calls t
    WHERE t.id = p_call_id AND t.chat_id = p_chat_id AND t.state = 'running' FOR SHARE;
    IF NOT FOUND THEN
      RETURN;
    END IF;
  END IF;
  PERFORM chat_lock_stream(p_chat_id);
  SELECT c.owner_id, c.started_at INTO owner_id, v_started FROM chats c
  WHERE c.id = p_chat_id AND NOT c.archived
    AND (p_call_id IS NOT NULL
      OR (c.status = 'running' AND c.worker_id = p_worker_id AND c.started_at = p_started_at));
  IF NOT FOUND THEN
    owner_id := NULL;
    RETURN;
  END IF;
  turn_id := chat_stream_turn_id(v_started);
  seq := nextval('chat_stream_parts_seq');
  -- turn_id and seq last: JSON.parse keeps the last of duplicate keys, so the data cannot forge
  -- them, however it spells them.
  body := format(E'event: %s\ndata: %s,"turn_id":%s,"seq":%s}\n\n', p_event,
    left(p_data, -1), COALESCE(to_json(turn_id)::text, 'null'), seq);
  IF p_event = 'retry' THEN
    UPDATE chat_stream_parts p SET saved = true
    WHERE p.chat_id = p_chat_id AND NOT p.saved AND p.call_id IS NULL;
  END IF;
  INSERT INTO chat_stream_parts (chat_id, seq, turn_id, call_id, body)
  VALUES (p_chat_id, seq, turn_id, p_call_id, body);
  -- Last, so the slot chat_listeners_exist may take is held for the commit only.
  IF chat_listeners_exist() THEN
    PERFORM pg_notify('chat_message_parts',
      json_build_object('c', p_chat_id, 'u', owner_id, 's', seq, 'b', body)::text);
  END IF;
END;
$$;

-- The chat's stream lock (lock order 7): one writer of its chat_stream_parts at a time.
CREATE OR REPLACE FUNCTION chat_lock_stream(p_chat_id uuid) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(hashtext('pgchatd.chat_stream'), hashtext(p_chat_id::text));
$$;

-- What replaces the in-flight output was stored: a step's or the turn's messages
-- (chat_run_save_step, chat_run_finish), or workspace calls' results (chat_tool_calls_store_results,
-- chat_fail_pending_tool_calls). Marks every unsaved part of the chat saved but the output of
-- calls still running (another call's result does not replace it). Last in those transactions:
-- the stream lock after the call rows they lock.
CREATE OR REPLACE FUNCTION chat_stream_parts_saved(p_chat_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_lock_stream(p_chat_id);
  UPDATE chat_stream_parts p SET saved = true
  WHERE p.chat_id = p_chat_id AND NOT p.saved
    AND (p.call_id IS NULL OR NOT EXISTS (
      SELECT 1 FROM chat_tool_calls t WHERE t.id = p.call_id AND t.state = 'running'));
END;
$$;
