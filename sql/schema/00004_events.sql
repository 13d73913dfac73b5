-- Change events: a durable, ordered log of what changed, written by triggers in the same
-- transaction as the change (sql/triggers/*.sql, the *_900_* triggers). Watch streams read it by
-- cursor, so a subscriber that reconnects misses nothing; NOTIFY is only a wake-up.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

CREATE TYPE chat_event_kind AS ENUM (
  -- The owner's watch stream (GET /chats/watch).
  'created', 'deleted', 'status_change', 'title_change', 'summary_change', 'diff_status_change',
  'action_required', 'context_dirty', 'updated', 'hard_deleted',
  -- A chat's own stream (GET /chats/{chat}/stream); status_change and action_required go to both.
  'message', 'queue_update', 'history_reset'
);

-- WARNING: read it in (xid, id) order and only below the snapshot's xmin (see chat_events_after).
-- ids are drawn before commit, so a transaction that started first may commit last: "id > last
-- seen" alone would skip its rows; no row can appear below the xmin horizon later.
CREATE TABLE chat_events (
  id bigint GENERATED ALWAYS AS IDENTITY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  -- No foreign keys: a hard_deleted event outlives its chat (and its owner).
  chat_id uuid NOT NULL,
  owner_id uuid NOT NULL,
  kind chat_event_kind NOT NULL,
  -- The chat's version after the change; a rendered event carries this version or a newer one.
  chat_version bigint NOT NULL,
  -- Small: ids and tool calls. The chat itself is read when the event is rendered.
  payload jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- The cursor order: the tailer reads it, pruning deletes a prefix of it.
  PRIMARY KEY (xid, id)
);

-- Resuming a watch stream (Last-Event-ID): one owner's events after a cursor.
CREATE INDEX chat_events_owner_cursor_idx ON chat_events (owner_id, xid, id);
-- Resuming a chat stream: one chat's events after a cursor.
CREATE INDEX chat_events_chat_cursor_idx ON chat_events (chat_id, xid, id);

-- How far pruning has gone: a cursor below it may have lost events, so its stream gets `resync`.
CREATE TABLE chat_event_horizon (
  only_row boolean PRIMARY KEY DEFAULT true CONSTRAINT chat_event_horizon_one_row CHECK (only_row),
  pruned_xid xid8 NOT NULL DEFAULT '0',
  pruned_id bigint NOT NULL DEFAULT 0
);
INSERT INTO chat_event_horizon DEFAULT VALUES;
