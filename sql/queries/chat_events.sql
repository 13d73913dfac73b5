-- name: ListChatEventsAfterCursor :many
-- The tailer: committed events after its cursor in cursor order. Only below the snapshot's xmin:
-- every transaction with a smaller xid has ended, so no row can later appear before the last one
-- returned (an id drawn earlier by a transaction that commits later sits above the horizon until
-- it commits). Served by the primary key.
SELECT id, xid::text AS xid, chat_id, owner_id, kind, chat_version, payload, created_at
FROM chat_events
WHERE (xid, id) > (@after_xid::xid8, @after_id::bigint)
  AND xid < pg_snapshot_xmin(pg_current_snapshot())
-- Qualified: a bare `xid` here would be the text output column, sorting "10" before "9".
ORDER BY chat_events.xid, chat_events.id
LIMIT @page_limit;

-- name: ListChatEventsByOwnerInRange :many
-- A watch stream resuming from Last-Event-ID: one owner's events after the client's cursor, up to
-- the cursor the tailer had reached when the subscriber registered (later ones arrive live).
SELECT id, xid::text AS xid, chat_id, owner_id, kind, chat_version, payload, created_at
FROM chat_events
WHERE owner_id = @owner_id
  AND kind = ANY(@kinds::chat_event_kind[])
  AND (xid, id) > (@after_xid::xid8, @after_id::bigint)
  AND (xid, id) <= (@until_xid::xid8, @until_id::bigint)
ORDER BY chat_events.xid, chat_events.id
LIMIT @page_limit;

-- name: ListChatEventsByChatInRange :many
-- A chat stream resuming from Last-Event-ID: the same, for one chat.
SELECT id, xid::text AS xid, chat_id, owner_id, kind, chat_version, payload, created_at
FROM chat_events
WHERE chat_id = @chat_id
  AND kind = ANY(@kinds::chat_event_kind[])
  AND (xid, id) > (@after_xid::xid8, @after_id::bigint)
  AND (xid, id) <= (@until_xid::xid8, @until_id::bigint)
ORDER BY chat_events.xid, chat_events.id
LIMIT @page_limit;

-- name: GetChatEventBounds :one
-- Where a new tailer starts (everything from the oldest running transaction on is still to come),
-- the next xid not yet handed out (a cursor at or above it was not made by this database), and how
-- far pruning has gone (a cursor below it may have lost events).
SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS start_xid,
  pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid,
  h.pruned_xid::text AS pruned_xid, h.pruned_id
FROM chat_event_horizon h;

-- name: PruneChatEvents :one
-- The retention job: one batch of events older than the retention (database clock).
SELECT chat_events_prune(
  now() - make_interval(secs => @retention_seconds::double precision), @batch_size::integer
) AS deleted;

-- name: NotifyChatEvents :exec
-- batched mode: one wake-up for every commit since the last one (src/watch/notifier.ts).
SELECT pg_notify('chat_events', 'batch');

-- name: NotifyChatEphemeral :exec
-- A process without a LISTEN connection of its own (`pgchatd runner`) publishing an ephemeral chat
-- stream event (message_part, retry) to every server; src/watch encodes the payload.
SELECT pg_notify('chat_message_parts', @payload::text);
