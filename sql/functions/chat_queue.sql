-- The queue: messages sent while a turn runs wait here (FIFO, at most chat_queue_limit()) and are
-- admitted one at a time: at a turn's end (chat_run_finish), on an interrupt, on a promotion, or
-- by recovery. Admission has one body, chat_admit_queued (the head: chat_admit_queue_head), and it
-- admits only a row its own DELETE removed. Sending is chat_send_message (chat_messages.sql).
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.

-- The queue holds at most this many messages per chat (docs/api.md: the 21st is refused with 429).
CREATE OR REPLACE FUNCTION chat_queue_limit() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 20 $$;

-- Admits one queued message of a locked chat, removing it from the queue; its model falls back
-- to the chat's. Admits only a row this call removed: NULL when the message is no longer queued
-- (deleted meanwhile), so a deleted message is never sent.
CREATE OR REPLACE FUNCTION chat_admit_queued(p_chat chats, p_queued_id bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_queued chat_queued_messages;
BEGIN
  DELETE FROM chat_queued_messages WHERE id = p_queued_id AND chat_id = p_chat.id
  RETURNING * INTO v_queued;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN chat_admit_message(
    p_chat.id, v_queued.content,
    chat_usable_model(v_queued.model_config_id, p_chat.last_model_config_id),
    v_queued.created_by, v_queued.api_key_id);
END;
$$;

-- Admits the head of a chat's queue, if any, as a turn's end does. Not for archived chats.
CREATE OR REPLACE FUNCTION chat_admit_queue_head(p_chat chats) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_head chat_queued_messages;
BEGIN
  IF p_chat.archived THEN
    RETURN NULL;
  END IF;
  SELECT * INTO v_head FROM chat_queued_messages WHERE chat_id = p_chat.id ORDER BY position LIMIT 1;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN chat_admit_queued(p_chat, v_head.id);
END;
$$;

-- DELETE /{chat}/queue/{queued}: under the chat's lock, like every transition, so a promotion or
-- a turn's end admitting the message either ran first (PC404 here) or finds it gone.
CREATE OR REPLACE FUNCTION chat_delete_queued(p_chat_id uuid, p_owner_id uuid, p_queued_id bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_lock_for_owner(p_chat_id, p_owner_id);
  DELETE FROM chat_queued_messages WHERE id = p_queued_id AND chat_id = p_chat_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Queued message not found.' USING ERRCODE = 'PC404';
  END IF;
END;
$$;

-- POST /{chat}/queue/{queued}/promote. On requires_action: error results for the pending calls,
-- then the message. On running: the message goes to the head of the queue and the turn runs on
-- (returns NULL). Otherwise the message is admitted now. Returns the admitted message's id.
CREATE OR REPLACE FUNCTION chat_promote_queued(p_chat_id uuid, p_owner_id uuid, p_queued_id bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_queued chat_queued_messages;
BEGIN
  v_chat := chat_lock_for_owner(p_chat_id, p_owner_id);
  PERFORM chat_require_writable(v_chat);
  SELECT * INTO v_queued FROM chat_queued_messages WHERE id = p_queued_id AND chat_id = p_chat_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Queued message not found.' USING ERRCODE = 'PC404';
  END IF;
  -- Running, or still leased by a runner that is saving an interrupted turn: the turn's end
  -- admits the head, so the message moves there and the turn's output stays before it.
  IF v_chat.status = 'running' OR v_chat.worker_id IS NOT NULL THEN
    UPDATE chat_queued_messages
    SET position = (SELECT min(position) - 1 FROM chat_queued_messages WHERE chat_id = p_chat_id)
    WHERE id = p_queued_id
      AND position > (SELECT min(position) FROM chat_queued_messages WHERE chat_id = p_chat_id);
    RETURN NULL;
  END IF;
  IF v_chat.status = 'requires_action' THEN
    PERFORM chat_fail_pending_tool_calls(p_chat_id, 'superseded by a queued message');
  END IF;
  RETURN chat_admit_queued(v_chat, v_queued.id);
END;
$$;
