-- postgres-migrations disable-transaction
-- An agent's tool-call stream resuming from Last-Event-ID (ListChatEventsByAgentInRange): one
-- agent's events after a cursor. Only tool-call events, so the index skips everything else.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_events_agent_cursor_idx
  ON chat_events ((payload ->> 'agent_id'), xid, id) WHERE kind IN ('tool_call', 'tool_call_canceled');
