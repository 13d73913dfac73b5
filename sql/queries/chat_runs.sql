-- name: ClaimPendingChats :many
-- The runner's claim: the oldest pending, unarchived chats (chats_pending_idx), leased to this
-- runner and set running in one statement. SKIP LOCKED: a chat another runner is claiming, or a
-- request is changing, is left for the next claim instead of waited for, so runners never block
-- each other and never take the same chat. A claim also takes a pending chat whose previous run
-- still holds the lease (an edit made it pending): that run's writes then fail the lease check.
UPDATE chats c
SET status = 'running', worker_id = @worker_id, started_at = now(), heartbeat_at = now(),
  last_error = NULL
FROM (
  SELECT p.id
  FROM chats p
  WHERE p.status = 'pending' AND NOT p.archived
  ORDER BY p.status_changed_at, p.id
  LIMIT @batch_size
  FOR NO KEY UPDATE SKIP LOCKED
) picked
WHERE c.id = picked.id
RETURNING c.id, c.started_at;

-- name: UpdateChatHeartbeatsByWorkerID :many
-- One statement per interval for all of this runner's turns (chats_leased_idx); also how a runner
-- checks a turn when chat_runner says it should stop. A chat missing from the result, or with
-- another started_at, is no longer this turn's: it stops without writing. A status other than
-- running, or archived, means the turn was interrupted, edited or archived meanwhile.
UPDATE chats
SET heartbeat_at = now()
WHERE worker_id = @worker_id AND id = ANY (@chat_ids::uuid[])
RETURNING id, status, started_at, archived;

-- name: GetChatForRunByID :one
-- What a turn needs besides the history: the chat's tools and title state, and its model with
-- the provider's settings and sealed key (decrypted only in memory, never logged).
SELECT c.id, c.owner_id, c.parent_chat_id, c.workspace_id, c.title_source, c.dynamic_tools,
  m.id AS model_config_id, m.model, m.context_limit,
  m.enabled AND NOT m.deleted AS model_enabled,
  p.id AS provider_id, p.provider, p.base_url, p.api_key_ciphertext,
  p.enabled AND NOT p.deleted AS provider_enabled
FROM chats c
JOIN chat_model_configs m ON m.id = c.last_model_config_id
JOIN chat_providers p ON p.id = m.provider_id
WHERE c.id = @id;

-- name: SaveChatRunStep :one
-- chat_run_save_step: see sql/functions/chat_runner.sql.
SELECT chat_run_save_step(
  @chat_id, @worker_id, @started_at, @model_config_id, @messages
) AS saved;

-- name: FinishChatRun :one
-- chat_run_finish: the turn's last messages, its status and the lease release in one transaction.
SELECT f.outcome, f.status, f.updated_at, f.title_source
FROM chat_run_finish(
  @chat_id, @worker_id, @started_at, @model_config_id, @messages, @outcome, sqlc.narg(error)
) AS f;

-- name: ReleaseChatRunsByWorkerID :one
-- Shutdown: this runner's running chats go back to pending for another runner.
SELECT chat_run_release_worker(@worker_id) AS released;

-- name: RecoverChatRuns :many
-- The recovery pass (chat_run_recover): stale leases, expired tool waits, stuck queues.
SELECT r.chat_id, r.action
FROM chat_run_recover(
  make_interval(secs => @stale_after_seconds::double precision),
  make_interval(secs => @tool_results_timeout_seconds::double precision)
) AS r;
