-- Triggers on notifications. Names: notifications_<nnn>_<purpose>.

-- A `notification` watch event per new notification, to its user (chat_id NULL; chat_version 0,
-- a notification has none). The notification travels in the payload, as the API shows it, so
-- rendering reads nothing; it is a few KB at most (25 titles).
CREATE OR REPLACE FUNCTION notifications__events_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_events_append(ARRAY(
    SELECT ROW(NULL, n.user_id, 'notification', 0, jsonb_build_object('notification',
      jsonb_build_object('id', n.id, 'kind', n.kind, 'title', n.title, 'body', n.body,
        'created_at', to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'read_at', NULL)))::chat_event_row
    FROM new_rows n
    ORDER BY n.id));
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER notifications_900_events_on_insert
  AFTER INSERT ON notifications REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION notifications__events_on_insert();
