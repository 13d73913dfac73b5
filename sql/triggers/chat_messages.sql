-- Triggers on chat_messages. Names: chat_messages_<nnn>_<purpose>.

-- Archived chats are read-only: no message of any kind lands in one. The row lock (the same one
-- an archive takes to update the chat) orders this insert against a concurrent archive: either
-- the archive waits for this transaction, or this insert sees the chat archived.
CREATE OR REPLACE FUNCTION chat_messages__check_chat_writable() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_archived boolean;
BEGIN
  SELECT archived INTO v_archived FROM chats WHERE id = NEW.chat_id FOR NO KEY UPDATE;
  IF v_archived THEN
    RAISE EXCEPTION 'Chat is archived.' USING ERRCODE = 'PC400',
      DETAIL = 'Unarchive the chat to add messages.';
  END IF;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_100_check_chat_writable
  BEFORE INSERT ON chat_messages
  FOR EACH ROW EXECUTE FUNCTION chat_messages__check_chat_writable();

-- A new user-visible user message moves the chat's updated_at (it is activity the owner caused).
-- Skipped when the chat was already touched in this transaction (creation writes both).
CREATE OR REPLACE FUNCTION chat_messages__touch_chat() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.role = 'user' AND NEW.visibility <> 'model' THEN
    UPDATE chats SET updated_at = now() WHERE id = NEW.chat_id AND updated_at <> now();
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_500_touch_chat
  AFTER INSERT ON chat_messages
  FOR EACH ROW EXECUTE FUNCTION chat_messages__touch_chat();

-- Keeps chat_prompts in step with the message: a user-visible user message with non-blank text
-- has exactly one row holding that text; anything else (another role, deleted, model-only,
-- non-array content, blank text) has none.
CREATE OR REPLACE FUNCTION chat_messages__sync_prompt() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_text text;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    DELETE FROM chat_prompts WHERE message_id = OLD.id;
  END IF;
  IF NEW.role = 'user' AND NOT NEW.deleted AND NEW.visibility IN ('user', 'both') THEN
    v_text := chat_prompt_text(NEW.content);
    IF v_text IS NOT NULL THEN
      INSERT INTO chat_prompts (message_id, chat_id, text) VALUES (NEW.id, NEW.chat_id, v_text);
    END IF;
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_510_sync_prompt
  AFTER INSERT OR UPDATE OF role, content, visibility, deleted ON chat_messages
  FOR EACH ROW EXECUTE FUNCTION chat_messages__sync_prompt();

-- Change events for the chat stream: one `message` per new user-visible message (model-only
-- messages are not part of the history clients see). The chat's owner and version are read here
-- because a message row has neither.
CREATE OR REPLACE FUNCTION chat_messages__events_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_events_append(ARRAY(
    SELECT ROW(m.chat_id, c.owner_id, 'message', c.version,
      jsonb_build_object('message_id', m.id))::chat_event_row
    FROM new_rows m
    JOIN chats c ON c.id = m.chat_id
    WHERE m.visibility <> 'model' AND NOT m.deleted
    ORDER BY m.id));
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_900_events_on_insert
  AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_messages__events_on_insert();

-- An edit soft-deletes messages: one `history_reset` per chat whose history (what users see:
-- not model-only messages such as context files) lost messages, so its stream subscribers
-- refetch instead of patching.
-- EXECUTE, so the join of the two transition tables is planned for the rows at hand each time:
-- plpgsql would cache a plan made for the first statement's row count, and a nested loop planned
-- for one row is quadratic for an edit that deletes thousands of messages. Edits are rare; the
-- planning is cheap next to them.
CREATE OR REPLACE FUNCTION chat_messages__events_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE $q$
    SELECT chat_events_append(ARRAY(
      SELECT ROW(c.id, c.owner_id, 'history_reset', c.version,
        jsonb_build_object('deleted_message_ids', d.ids))::chat_event_row
      FROM (
        SELECT n.chat_id, jsonb_agg(n.id ORDER BY n.id) AS ids
        FROM new_rows n
        JOIN old_rows o ON o.id = n.id
        WHERE n.deleted AND NOT o.deleted AND n.visibility <> 'model'
        GROUP BY n.chat_id
      ) d
      JOIN chats c ON c.id = d.chat_id
      ORDER BY c.id))
  $q$;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_900_events_on_update
  AFTER UPDATE ON chat_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_messages__events_on_update();
