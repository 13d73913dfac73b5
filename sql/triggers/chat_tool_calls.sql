-- Triggers of chat_tool_calls (rules: sql/functions/chat_tool_calls.sql).

-- Change events for the agent's tool-call stream (docs/api.md "Workspace tools"): `tool_call` for
-- each new call addressed to an agent, `tool_call_canceled` for each call that closed without the
-- agent's answer (canceled, timed out) while the agent may be running it or about to start it.
-- Written in every events mode, unlike the watch events: the log is how calls reach their agent,
-- not only how clients observe changes. The payload names the agent (the stream's index,
-- chat_events_agent_cursor_idx) and the call; the call itself is read when the event is rendered.
-- Statement-level: one append per statement, whatever it changed.
CREATE OR REPLACE FUNCTION chat_tool_calls__events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM chat_events_append(ARRAY(
      SELECT ROW(c.id, c.owner_id, 'tool_call', c.version,
        jsonb_build_object('agent_id', n.agent_id, 'call_id', n.id))::chat_event_row
      FROM new_rows n JOIN chats c ON c.id = n.chat_id
      WHERE n.agent_id IS NOT NULL
      ORDER BY n.id));
  ELSE
    PERFORM chat_events_append(ARRAY(
      SELECT ROW(c.id, c.owner_id, 'tool_call_canceled', c.version,
        jsonb_build_object('agent_id', n.agent_id, 'call_id', n.id))::chat_event_row
      FROM new_rows n
      JOIN old_rows o ON o.id = n.id
      JOIN chats c ON c.id = n.chat_id
      WHERE n.agent_id IS NOT NULL AND o.state IN ('pending', 'running')
        AND n.state IN ('canceled', 'timed_out')
      ORDER BY n.id));
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_tool_calls_900_events_on_insert
  AFTER INSERT ON chat_tool_calls REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_tool_calls__events();

CREATE OR REPLACE TRIGGER chat_tool_calls_900_events_on_update
  AFTER UPDATE ON chat_tool_calls REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_tool_calls__events();
