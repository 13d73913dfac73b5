-- name: PublishChatStreamEvent :one
-- A turn's message_part or retry event (sql/functions/chat_stream_parts.sql): stored as in-flight
-- output and sent to every replica in one transaction, under the runner's lease or for the
-- agent's running call. NULLs when that lease or call is gone.
SELECT p.turn_id, p.seq, p.body, p.owner_id
FROM chat_stream_publish(
  @chat_id, sqlc.narg(worker_id), sqlc.narg(started_at), sqlc.narg(call_id)::bigint, @event,
  @data
) AS p;

-- name: ListChatStreamPartsByChatID :many
-- A chat stream's snapshot: the stored parts of the chat (primary key range), the running run's
-- unsaved ones with their SSE block (in-flight), and every seq, the highest of which tells live
-- parts already shown from parts not yet shown.
SELECT p.seq,
  CASE WHEN NOT p.saved AND NOT c.archived AND (
      (c.status = 'running' AND p.call_id IS NULL
        AND p.turn_id = chat_stream_turn_id(c.started_at))
      -- A command still running: its output stays in flight until its result is stored, across
      -- a runner restart or an interrupt that has not ended the turn yet.
      OR t.state = 'running')
    THEN p.body END AS in_flight_body
FROM chats c
JOIN chat_stream_parts p ON p.chat_id = c.id
LEFT JOIN chat_tool_calls t ON t.id = p.call_id
WHERE c.id = @chat_id
ORDER BY p.seq;

-- name: ListChatStreamPartsMarksByChatIDs :many
-- Change events: for the chats of a batch's `message` events, the highest seq of their parts a
-- stored message replaced, so a stream drops such a part still on its way (docs/sql.md
-- "In-flight output"). The primary key, read backwards per chat.
SELECT c.id AS chat_id,
  LEAST(
    (SELECT p.seq FROM chat_stream_parts p WHERE p.chat_id = c.id AND p.saved
     ORDER BY p.seq DESC LIMIT 1),
    -- Never past a part still in flight (a command still running): it must not be dropped.
    (SELECT p.seq - 1 FROM chat_stream_parts p WHERE p.chat_id = c.id AND NOT p.saved
     ORDER BY p.seq LIMIT 1)) AS saved_through
FROM unnest(@chat_ids::uuid[]) AS c (id);

-- name: PruneChatStreamParts :one
-- With change-event pruning: parts that are no longer in-flight (saved, or neither of the chat's
-- current run nor of a command still running) after a minute, which is far longer than a NOTIFY takes to arrive. The
-- table holds the parts of the last minute and of the steps still streaming: a sequential scan.
WITH gone AS (
  DELETE FROM chat_stream_parts d
  WHERE (d.chat_id, d.seq) IN (
    SELECT p.chat_id, p.seq FROM chat_stream_parts p
    WHERE p.created_at < now() - interval '1 minute'
      AND (p.saved OR NOT (
        EXISTS (SELECT 1 FROM chats c
          WHERE c.id = p.chat_id AND c.status = 'running'
            AND chat_stream_turn_id(c.started_at) = p.turn_id)
        OR EXISTS (SELECT 1 FROM chat_tool_calls t WHERE t.id = p.call_id AND t.state = 'running')))
    -- Rows a publisher or a step's save holds are left for the next purge: it never waits, so
    -- it never takes part in a deadlock with them.
    FOR UPDATE SKIP LOCKED)
  RETURNING 1
)
SELECT count(*)::integer AS deleted FROM gone;
