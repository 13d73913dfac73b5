-- name: ListChatEventsAfterCursor :many
-- The tailer: committed events after its cursor in cursor order. Only below a horizon below which
-- every transaction has ended, so no row can later appear before the last one returned (an id
-- drawn earlier by a transaction that commits later sits above the horizon until it commits).
-- The horizon is the snapshot's xmin, cheap and cluster-wide; while the tailer knows that only
-- other databases' transactions hold that back (@past_other_databases, from
-- GetChatEventHorizonStatus), chat_events_horizon(), which looks past them. Served by the
-- primary key.
SELECT id, xid::text AS xid, chat_id, owner_id, kind, chat_version, payload, created_at
FROM chat_events
WHERE (xid, id) > (@after_xid::xid8, @after_id::bigint)
  AND xid < CASE WHEN @past_other_databases::boolean THEN chat_events_horizon()
    ELSE pg_snapshot_xmin(pg_current_snapshot()) END
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

-- name: ListChatEventsByAgentInRange :many
-- An agent's tool-call stream resuming from Last-Event-ID: its events after the agent's cursor
-- (chat_events_agent_cursor_idx), up to where the tailer was when the stream registered.
SELECT id, xid::text AS xid, chat_id, owner_id, kind, chat_version, payload, created_at
FROM chat_events
WHERE payload ->> 'agent_id' = @agent_id::text
  AND kind IN ('tool_call', 'tool_call_canceled')
  AND (xid, id) > (@after_xid::xid8, @after_id::bigint)
  AND (xid, id) <= (@until_xid::xid8, @until_id::bigint)
ORDER BY chat_events.xid, chat_events.id
LIMIT @page_limit;

-- name: GetChatEventBounds :one
-- Where a new tailer starts (everything from the oldest running transaction on is still to come),
-- the next xid not yet handed out (a cursor at or above it was not made by this database), and how
-- far pruning has gone (a cursor below it may have lost events).
SELECT chat_events_horizon()::text AS start_xid,
  pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid,
  h.pruned_xid::text AS pruned_xid, h.pruned_id
FROM chat_event_horizon h;

-- name: GetChatEventHorizonStatus :one
-- The tailer's look at its horizon, once a second and when a commit it was told about stays out
-- of reach: the cluster-wide xmin and this database's horizon (they differ while only other
-- databases' transactions hold xmin back, and the tailer then reads past it), the oldest
-- committed event after @after that is still above the horizon (delivery is held back since
-- then), and the transaction at the horizon: a backend (pid, database, application) or a prepared
-- transaction (its gid). pg_stat_activity is read only here, not on every tailer read: building
-- its rows costs ~0.3 ms. MATERIALIZED: the horizon is computed once, not once per reference.
WITH h AS MATERIALIZED (
  SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin, chat_events_horizon() AS horizon
)
SELECT h.xmin::text AS xmin, h.horizon::text AS horizon,
  (SELECT min(e.created_at) FROM chat_events e
   WHERE (e.xid, e.id) > (@after_xid::xid8, @after_id::bigint) AND e.xid >= h.horizon) AS held_since,
  now() AS now,
  b.pid AS blocker_pid, b.database AS blocker_database, b.application AS blocker_application,
  b.xact_start AS blocker_xact_start
FROM h
LEFT JOIN LATERAL (
  SELECT a.pid, d.datname::text AS database, a.application_name AS application, a.xact_start
  FROM pg_stat_get_activity(NULL) a
  LEFT JOIN pg_database d ON d.oid = a.datid
  WHERE a.backend_xid::text::bigint = (h.horizon::text::numeric % 4294967296)::bigint
  UNION ALL
  SELECT NULL, p.database::text, 'prepared transaction ' || p.gid, p.prepared
  FROM pg_prepared_xacts p
  WHERE p.transaction::text::bigint = (h.horizon::text::numeric % 4294967296)::bigint
  LIMIT 1
) b ON true;

-- name: PruneChatEvents :one
-- The retention job: one batch of events older than the retention (database clock).
SELECT chat_events_prune(
  now() - make_interval(secs => @retention_seconds::double precision), @batch_size::integer
) AS deleted;

-- name: NotifyChatEvents :one
-- batched mode: one wake-up for every commit since the last one (src/watch/notifier.ts), sent only
-- when some other session listens (chat_listeners_exist). Whether it was sent: when not, the
-- caller wakes its own tailer, if it has one, itself.
SELECT chat_events_notify_batch() AS sent;

-- name: AnnounceChatListener :one
-- Before a connection's first LISTEN of change events or streamed parts (src/db/listen.ts): from
-- now on, publishers NOTIFY them. False when a publisher held its slot: nothing was taken, and
-- the caller tries again shortly.
SELECT chat_listener_announce() AS announced;

-- name: WithdrawChatListener :exec
-- After a connection's last UNLISTEN of them.
SELECT chat_listener_withdraw();
