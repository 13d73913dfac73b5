-- Triggers on chat_queued_messages. Names: chat_queued_messages_<nnn>_<purpose>.

-- Change events for the chat stream: one `queue_update` per chat whose queue a statement changed
-- (send, promote, delete, edit). The queue is read when the event is rendered; the event only
-- says "it changed". Rows of a chat that is being deleted find no chat and emit nothing (the
-- chat's own hard_deleted covers it).
CREATE OR REPLACE FUNCTION chat_queued_messages__emit_queue_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF chat_events_mode() = 'off' THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    INSERT INTO chat_events (chat_id, owner_id, kind, chat_version)
    SELECT c.id, c.owner_id, 'queue_update', c.version
    FROM chats c WHERE c.id IN (SELECT chat_id FROM old_rows) ORDER BY c.id;
  ELSE
    INSERT INTO chat_events (chat_id, owner_id, kind, chat_version)
    SELECT c.id, c.owner_id, 'queue_update', c.version
    FROM chats c WHERE c.id IN (SELECT chat_id FROM new_rows) ORDER BY c.id;
  END IF;
  IF FOUND THEN
    PERFORM chat_events_notify();
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_queued_messages_900_events_on_insert
  AFTER INSERT ON chat_queued_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_queued_messages__emit_queue_update();

CREATE OR REPLACE TRIGGER chat_queued_messages_900_events_on_update
  AFTER UPDATE ON chat_queued_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_queued_messages__emit_queue_update();

CREATE OR REPLACE TRIGGER chat_queued_messages_900_events_on_delete
  AFTER DELETE ON chat_queued_messages REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_queued_messages__emit_queue_update();
