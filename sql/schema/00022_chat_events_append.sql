-- One change event as the triggers hand it to chat_events_append (sql/functions/chat_events.sql),
-- the one writer of chat_events: the log's own columns (id, xid, created_at) are filled there.
CREATE TYPE chat_event_row AS (
  chat_id uuid,
  owner_id uuid,
  kind chat_event_kind,
  chat_version bigint,
  payload jsonb
);
