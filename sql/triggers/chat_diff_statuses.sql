-- Triggers on chat_diff_statuses. Names: chat_diff_statuses_<nnn>_<purpose>.

-- Change events for the owner's watch stream: one `diff_status_change` per chat whose diff
-- status a statement wrote. The status is read with the chat when the event is rendered.
CREATE OR REPLACE FUNCTION chat_diff_statuses__emit_diff_status_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF chat_events_mode() = 'off' THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    INSERT INTO chat_events (chat_id, owner_id, kind, chat_version)
    SELECT c.id, c.owner_id, 'diff_status_change', c.version
    FROM chats c WHERE c.id IN (SELECT chat_id FROM old_rows) ORDER BY c.id;
  ELSE
    INSERT INTO chat_events (chat_id, owner_id, kind, chat_version)
    SELECT c.id, c.owner_id, 'diff_status_change', c.version
    FROM chats c WHERE c.id IN (SELECT chat_id FROM new_rows) ORDER BY c.id;
  END IF;
  IF FOUND THEN
    PERFORM chat_events_notify();
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_insert
  AFTER INSERT ON chat_diff_statuses REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_diff_statuses__emit_diff_status_change();

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_update
  AFTER UPDATE ON chat_diff_statuses REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_diff_statuses__emit_diff_status_change();

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_delete
  AFTER DELETE ON chat_diff_statuses REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_diff_statuses__emit_diff_status_change();
