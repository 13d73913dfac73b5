-- name: ClaimPendingChats :many
-- chat_run_claim: see sql/functions/chat_runs.sql. @free_slots: the runner's free slots before
-- this claim, which it reports for the chooser of the runner a pending chat wakes.
SELECT c.id, c.started_at
FROM chat_run_claim(@worker_id, @free_slots, @batch_size) AS c;

-- name: ListChatRunStatesByWorkerID :many
-- Where this runner's turns stand (chats_leased_idx): every heartbeat interval, and when
-- chat_runner says one should stop. Reads only: the lease is renewed by the runner's own row
-- (UpsertChatRunnerHeartbeat). A chat missing from the result, or with another started_at, is no
-- longer this turn's: it stops without writing. A status other than running, or archived, means
-- the turn was interrupted or archived meanwhile.
SELECT c.id, c.status, c.started_at, c.archived
FROM chats c
WHERE c.worker_id = @worker_id AND c.id = ANY (@chat_ids::uuid[]);

-- name: GetChatForRunByID :one
-- What a turn needs besides the history: the chat's tools and title state, and its model with
-- the provider's settings; the sealed key the owner's calls use under the deployment's routing
-- (@gateway; decrypted only in memory, never logged) or why there is none, and the API key that
-- initiated the turn and whether it is still active (a gateway-routed call fails closed without
-- one), both from chat_run_model_key; and whether the owner is at the spend limit in the chat's
-- organization (the turn then ends in a usage_limit error without calling the model).
-- last_injected_context: the turn writes its own only when it differs (most turns carry what the
-- last one did). The bound agent and whether it is online (workspace tools are offered only then),
-- and whether workspace tool calls of an earlier step are still unsettled (the turn resumes
-- waiting for them instead of calling the model), from chat_run_agent_state.
SELECT c.id, c.owner_id, c.parent_chat_id, c.workspace_id, c.agent_id, c.title_source,
  c.dynamic_tools, c.plan_mode, c.last_injected_context,
  w.agent_online, w.agent_last_seen_at, w.unsettled_tool_calls,
  m.id AS model_config_id, m.model, m.context_limit, m.store_responses,
  m.enabled AND NOT m.deleted AS model_enabled,
  p.id AS provider_id, p.provider, p.base_url,
  r.api_key_ciphertext, r.key_source, r.unavailable_reason,
  r.initiator_api_key_id, r.initiator_key_active,
  p.enabled AND NOT p.deleted AS provider_enabled,
  s.is_limited AND s.current_spend >= s.spend_limit_micros AS over_spend_limit,
  s.period AS spend_period, s.spend_limit_micros, s.current_spend, s.period_end AS spend_resets_at
FROM chats c
JOIN chat_model_configs m ON m.id = c.last_model_config_id
JOIN chat_providers p ON p.id = m.provider_id
CROSS JOIN LATERAL chat_run_model_key(c, p, @gateway) r
CROSS JOIN LATERAL chat_usage_limit_status(c.owner_id, c.organization_id) s
CROSS JOIN LATERAL chat_run_agent_state(c) w
WHERE c.id = @id;

-- name: SaveChatRunToolStep :one
-- chat_run_save_tool_step: see sql/functions/chat_runs.sql.
SELECT chat_run_save_tool_step(
  @chat_id, @worker_id, @started_at, @model_config_id, @messages, sqlc.narg(plan_file),
  @tool_calls
) AS saved;

-- name: SettleChatRunToolCalls :one
-- chat_run_settle_tool_calls: see sql/functions/chat_tool_calls.sql.
SELECT s.held, s.open_calls, s.next_deadline_at, s.unanswered_calls
FROM chat_run_settle_tool_calls(@chat_id, @worker_id, @started_at) AS s;

-- name: SetChatLastInjectedContextByID :exec
-- At a turn's start, while its lease holds: the context its prompt carries (src/runner/turn.ts,
-- injectedContext; NULL for none). Called only when it differs from what the turn read, and
-- guarded here too, so a chat is not rewritten every turn; no change event (the chat's readers
-- see it in GET /{chat}).
UPDATE chats SET last_injected_context = @context
WHERE id = @chat_id AND worker_id = @worker_id AND started_at = @started_at
  AND last_injected_context IS DISTINCT FROM @context;

-- name: FinishChatRun :one
-- chat_run_finish: the turn's last messages, its status and the lease release in one transaction.
SELECT f.outcome, f.status, f.updated_at, f.title_source
FROM chat_run_finish(
  @chat_id, @worker_id, @started_at, @model_config_id, @messages, @outcome, sqlc.narg(error)
) AS f;

-- name: ReleaseChatRunsByWorkerID :one
-- Shutdown: this runner's running chats go back to pending for another runner.
SELECT chat_run_release_worker(@worker_id) AS released;

-- name: ReleaseOrphanedChatRunsByWorkerID :one
-- chat_run_release_orphans: see sql/functions/chat_runs.sql. @running and @running_started_at:
-- the leases (chat, started_at) this runner's turns hold now, which are kept.
SELECT o.released, o.skipped
FROM chat_run_release_orphans(
  @worker_id, @running::uuid[], @running_started_at::timestamptz[]
) AS o;

-- name: ListChatRecoveryCandidates :many
-- The recovery pass's candidates, at most @batch_size of each kind (chat_run_recover_chat checks
-- each again under its lock): the leases of runners whose row went stale (chat_runners is a few
-- rows; their chats through chats_leased_idx), leases of runners that have no row and renew
-- nothing (a row deleted by hand, or a rollback to the previous release after a crash: the
-- distinct holders, one index probe each through chats_leased_idx, that are not in chat_runners),
-- leases of the previous release's runners whose chats.heartbeat_at went stale
-- (chats_legacy_leases_idx, empty outside a rolling upgrade),
-- unarchived chats waiting for tool results too long (chats_requires_action_idx), and idle chats
-- with a queue (driven from the queue table, which holds only busy chats' messages: never a scan
-- of the mostly waiting chats). @skip_ids: chats whose recovery failed earlier in this pass, so
-- they cannot crowd the others out of a batch.
SELECT id FROM (
  (SELECT s.id FROM chat_runners r
   JOIN chats s ON s.worker_id = r.id
   WHERE r.heartbeat_at < now() - make_interval(secs => @stale_after_seconds::double precision)
     AND s.id <> ALL (@skip_ids::uuid[])
   ORDER BY s.id
   LIMIT @batch_size)
  UNION
  (SELECT o.id FROM (
     WITH RECURSIVE holders (worker_id) AS (
       (SELECT h.worker_id FROM chats h WHERE h.worker_id IS NOT NULL
        ORDER BY h.worker_id LIMIT 1)
       UNION ALL
       SELECT (SELECT n.worker_id FROM chats n WHERE n.worker_id > holders.worker_id
               ORDER BY n.worker_id LIMIT 1)
       FROM holders WHERE holders.worker_id IS NOT NULL
     )
     SELECT holders.worker_id FROM holders
     WHERE holders.worker_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM chat_runners r WHERE r.id = holders.worker_id)
   ) rowless
   -- LATERAL: one index scan per rowless holder (normally none), never a join over every lease.
   CROSS JOIN LATERAL (
     SELECT d.id FROM chats d
     WHERE d.worker_id = rowless.worker_id AND d.heartbeat_at IS NULL
       AND d.id <> ALL (@skip_ids::uuid[])
     ORDER BY d.id
     LIMIT @batch_size
   ) o
   LIMIT @batch_size)
  UNION
  (SELECT l.id FROM chats l
   WHERE l.worker_id IS NOT NULL AND l.heartbeat_at IS NOT NULL
     AND l.heartbeat_at < now() - make_interval(secs => @stale_after_seconds::double precision)
     AND l.id <> ALL (@skip_ids::uuid[])
   ORDER BY l.heartbeat_at
   LIMIT @batch_size)
  UNION
  (SELECT t.id FROM chats t
   WHERE t.status = 'requires_action' AND NOT t.archived
     AND t.status_changed_at
       < now() - make_interval(secs => @tool_results_timeout_seconds::double precision)
     AND t.id <> ALL (@skip_ids::uuid[])
   ORDER BY t.status_changed_at
   LIMIT @batch_size)
  UNION
  (SELECT q.id FROM chats q
   WHERE q.id IN (SELECT m.chat_id FROM chat_queued_messages m)
     AND q.status = 'waiting' AND q.worker_id IS NULL AND NOT q.archived
     AND q.id <> ALL (@skip_ids::uuid[])
   ORDER BY q.id
   LIMIT @batch_size)
) candidates;

-- name: RecoverChatRunByID :one
-- One candidate of the recovery pass, in a transaction of its own (chat_run_recover_chat).
SELECT chat_run_recover_chat(
  @chat_id,
  make_interval(secs => @stale_after_seconds::double precision),
  make_interval(secs => @tool_results_timeout_seconds::double precision)
) AS action;
