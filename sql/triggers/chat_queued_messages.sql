-- Triggers on chat_queued_messages. Names: chat_queued_messages_<nnn>_<purpose>.

-- Change events for the chat stream: one `queue_update` per chat whose queue a statement changed
-- (send, promote, delete, edit); see chat_events__emit_per_chat in sql/functions/chat_events.sql.
CREATE OR REPLACE TRIGGER chat_queued_messages_900_events_on_insert
  AFTER INSERT ON chat_queued_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_events__emit_per_chat('queue_update');

CREATE OR REPLACE TRIGGER chat_queued_messages_900_events_on_update
  AFTER UPDATE ON chat_queued_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_events__emit_per_chat('queue_update');

CREATE OR REPLACE TRIGGER chat_queued_messages_900_events_on_delete
  AFTER DELETE ON chat_queued_messages REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_events__emit_per_chat('queue_update');
