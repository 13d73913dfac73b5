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
-- registered misses nothing published before. One publisher of a chat at a time (an advisory lock
-- per chat, held to commit): seqs are allocated in commit order, so whatever a stream receives
-- live after its read carries a higher seq than everything it read. p_data is the event's JSON
-- object as text (kept as written: jsonb would reorder it and refuse \u0000); turn_id and seq are
-- added in front. Who may publish:
--   p_worker_id/p_started_at: a runner, while that lease holds and the chat runs unarchived (a
--     run that lost it publishes nothing: its output would mix with the next run's);
--   p_call_id: the agent's output of that workspace call, while the call runs (its row is read
--     FOR SHARE: the result's chat_tool_call_complete waits for this publication, or this one
--     finds the call closed).
-- A retry first marks the parts before it saved. Returns NULLs when nothing was published, else
-- the event's turn_id, seq and SSE block and the chat's owner (for the caller's own subscribers);
-- p_origin rides along so the caller's LISTEN connection skips its own notification.
CREATE OR REPLACE FUNCTION chat_stream_publish(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz, p_call_id bigint, p_origin text,
  p_event text, p_data text, OUT turn_id text, OUT seq bigint, OUT body text, OUT owner_id uuid
)
LANGUAGE plpgsql AS $$
DECLARE
  v_started timestamptz;
  v_data json;
BEGIN
  IF p_event IS NULL OR p_event NOT IN ('message_part', 'retry') THEN
    RAISE EXCEPTION 'Not a stream event: %.', p_event USING ERRCODE = '22023';
  END IF;
  -- One line of SSE data holding one non-empty JSON object without the fields added here (the
  -- cast refuses what is not JSON).
  v_data := p_data::json;
  IF p_data ~ '[\r\n]' OR json_typeof(v_data) IS DISTINCT FROM 'object'
     OR v_data -> 'seq' IS NOT NULL OR v_data -> 'turn_id' IS NOT NULL
     OR NOT EXISTS (SELECT 1 FROM json_object_keys(v_data)) THEN
    RAISE EXCEPTION 'A stream event''s data must be one line of a non-empty JSON object.'
      USING ERRCODE = '22023';
  END IF;
  IF (p_worker_id IS NULL) = (p_call_id IS NULL) THEN
    RAISE EXCEPTION 'A stream event is published under a lease or for a running call.'
      USING ERRCODE = '22023';
  END IF;
  IF p_call_id IS NOT NULL THEN
    PERFORM 1 FROM chat_tool_calls t
    WHERE t.id = p_call_id AND t.chat_id = p_chat_id AND t.state = 'running' FOR SHARE;
    IF NOT FOUND THEN
      RETURN;
    END IF;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('pgchatd.chat_stream'), hashtext(p_chat_id::text));
  SELECT c.owner_id, c.started_at INTO owner_id, v_started FROM chats c
  WHERE c.id = p_chat_id AND c.status = 'running' AND NOT c.archived
    AND (p_worker_id IS NULL OR (c.worker_id = p_worker_id AND c.started_at = p_started_at));
  IF NOT FOUND THEN
    owner_id := NULL;
    RETURN;
  END IF;
  turn_id := chat_stream_turn_id(v_started);
  seq := nextval('chat_stream_parts_seq');
  body := format(E'event: %s\ndata: {"turn_id":%s,"seq":%s,%s\n\n', p_event,
    to_json(turn_id)::text, seq, substr(btrim(p_data), 2));
  IF p_event = 'retry' THEN
    UPDATE chat_stream_parts p SET saved = true WHERE p.chat_id = p_chat_id AND NOT p.saved;
  END IF;
  INSERT INTO chat_stream_parts (chat_id, seq, turn_id, body)
  VALUES (p_chat_id, seq, turn_id, body);
  PERFORM pg_notify('chat_message_parts', json_build_object(
    'o', p_origin, 'c', p_chat_id, 'u', owner_id, 's', seq, 'b', body)::text);
END;
$$;

-- A stored message ends the in-flight output before it (chat_run_insert_messages calls this in
-- the transaction that stores the step's or the turn's messages).
CREATE OR REPLACE FUNCTION chat_stream_parts_saved(p_chat_id uuid) RETURNS void
LANGUAGE sql AS $$
  UPDATE chat_stream_parts SET saved = true WHERE chat_id = p_chat_id AND NOT saved;
$$;
