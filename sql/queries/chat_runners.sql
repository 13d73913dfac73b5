-- name: UpsertChatRunnerHeartbeat :one
-- A runner's registration at start and its heartbeat every interval (sql/functions/chat_runners.sql):
-- one narrow row per runner renews every lease it holds, however many turns it runs
-- (chat_run_lease_expired). Also how a runner presumed dead and reaped comes back: started_at
-- then differs from the one its start returned, and its turns' leases are gone (it stops them).
INSERT INTO chat_runners (id, hostname, pid, capacity, free_slots, heartbeat_interval)
VALUES (@id, @hostname, @pid, @capacity, @free_slots,
  make_interval(secs => @heartbeat_seconds::double precision))
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = now(), free_slots = EXCLUDED.free_slots, capacity = EXCLUDED.capacity,
  heartbeat_interval = EXCLUDED.heartbeat_interval
RETURNING started_at;

-- name: DeleteStaleChatRunners :many
-- The recovery pass's last step: rows of runners silent for @stale_after_seconds whose leases
-- recovery has handed back. A claim locks its runner's row and renews it before it commits, so a
-- row the claim got to first is skipped (SKIP LOCKED), and one it renewed since this statement's
-- snapshot is re-checked when locked and left: no chat is ever leased to a runner without a row.
-- Locked in id order, so two passes deleting at once never wait for each other in a cycle.
DELETE FROM chat_runners d
WHERE d.id IN (
  SELECT r.id FROM chat_runners r
  WHERE r.heartbeat_at < now() - make_interval(secs => @stale_after_seconds::double precision)
    AND NOT EXISTS (SELECT 1 FROM chats c WHERE c.worker_id = r.id)
  ORDER BY r.id
  FOR UPDATE SKIP LOCKED
)
RETURNING d.id;
