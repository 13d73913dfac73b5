-- Triggers on chat_diff_statuses. Names: chat_diff_statuses_<nnn>_<purpose>.

-- Change events for the owner's watch stream: one `diff_status_change` per chat whose diff status
-- a statement wrote; see chat_events__emit_per_chat in sql/functions/chat_events.sql.
CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_insert
  AFTER INSERT ON chat_diff_statuses REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_events__emit_per_chat('diff_status_change');

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_update
  AFTER UPDATE ON chat_diff_statuses REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_events__emit_per_chat('diff_status_change');

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_delete
  AFTER DELETE ON chat_diff_statuses REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_events__emit_per_chat('diff_status_change');
