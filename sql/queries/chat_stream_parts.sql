-- name: PublishChatStreamEvent :one
-- A turn's message_part or retry event (sql/functions/chat_stream_parts.sql): stored as in-flight
-- output and sent to every replica in one transaction, under the runner's lease or for the
-- agent's running call. NULLs when that lease or call is gone.
SELECT p.turn_id, p.seq, p.body, p.owner_id
FROM chat_stream_publish(
  @chat_id, sqlc.narg(worker_id), sqlc.narg(started_at), sqlc.narg(call_id)::bigint, @origin,
  @event, @data
) AS p;

-- name: ListChatStreamPartsByChatID :many
-- A chat stream's snapshot: the stored parts of the chat (primary key range), the running run's
-- unsaved ones with their SSE block (in-flight), and every seq, the highest of which tells live
-- parts already shown from parts not yet shown.
SELECT p.seq,
  CASE WHEN NOT p.saved AND c.status = 'running'
    AND p.turn_id = chat_stream_turn_id(c.started_at) THEN p.body END AS in_flight_body
FROM chats c
JOIN chat_stream_parts p ON p.chat_id = c.id
WHERE c.id = @chat_id
ORDER BY p.seq;

-- name: PruneChatStreamParts :one
-- With change-event pruning: parts that are no longer in-flight (saved, or of a run that is not
-- the chat's current one) after a minute, which is far longer than a NOTIFY takes to arrive. The
-- table holds the parts of the last minute and of the steps still streaming: a sequential scan.
WITH gone AS (
  DELETE FROM chat_stream_parts p
  WHERE p.created_at < now() - interval '1 minute'
    AND (p.saved OR NOT EXISTS (
      SELECT 1 FROM chats c
      WHERE c.id = p.chat_id AND c.status = 'running'
        AND chat_stream_turn_id(c.started_at) = p.turn_id))
  RETURNING 1
)
SELECT count(*)::integer AS deleted FROM gone;
