-- The in-flight output of running turns (table: sql/schema/00061_chat_stream_parts.sql; the
-- stream rules: docs/api.md "Chat stream events").

-- The id of the chat's current run of a turn, as message_part events show it (`turn_id`): its
-- lease's start in microseconds. A turn that runs again (another runner after a crash or a
-- shutdown) gets a new one, so a client can drop what the lost run streamed.
CREATE OR REPLACE FUNCTION chat_stream_turn_id(p_started_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT (extract(epoch FROM p_started_at) * 1000000)::bigint::text;
$$;

-- Publishes one ephemeral chat stream event (message_part, retry): stores it as in-flight output
-- and NOTIFYs chat_message_parts with it, in one transaction, so a stream that reads the table after it
-- registered misses nothing published before, and whatever it receives live after that carries a
-- higher seq than what it read. p_data is the event's JSON object as text (kept as written: jsonb
-- would reorder it and refuse \u0000); turn_id and seq are added in front.
--   p_worker_id/p_started_at: the runner's lease. A run that lost it publishes nothing (NULLs
--   returned): its output would mix with the new run's. NULL: any publisher (the agent's command
--   output of a running call) while the chat exists.
--   retry: the parts before it are no longer in-flight (a client drops them too).
-- Returns the event's turn_id, seq and SSE block, for the caller's own subscribers; p_origin
-- rides along so the caller's LISTEN connection skips its own notification.
CREATE OR REPLACE FUNCTION chat_stream_publish(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz, p_origin text, p_event text,
  p_data text, OUT turn_id text, OUT seq bigint, OUT body text, OUT owner_id uuid
)
LANGUAGE plpgsql AS $$
DECLARE
  v_started timestamptz;
BEGIN
  IF p_event NOT IN ('message_part', 'retry') OR left(p_data, 1) <> '{' OR p_data = '{}' THEN
    RAISE EXCEPTION 'Not a stream event: %.', p_event USING ERRCODE = '22023';
  END IF;
  SELECT c.owner_id, c.started_at INTO owner_id, v_started FROM chats c
  WHERE c.id = p_chat_id
    AND (p_worker_id IS NULL
      OR (c.worker_id = p_worker_id AND c.started_at = p_started_at AND c.status = 'running'));
  IF NOT FOUND THEN
    owner_id := NULL;
    RETURN;
  END IF;
  turn_id := chat_stream_turn_id(v_started);
  seq := nextval('chat_stream_parts_seq');
  body := format(E'event: %s\ndata: {"turn_id":%s,"seq":%s,%s\n\n', p_event,
    COALESCE(to_json(turn_id)::text, 'null'), seq, substr(p_data, 2));
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
