-- The runner's side of the turn lifecycle: the claim, leases, saving a turn's output, shutdown,
-- recovery, and token costs. The runner's own row (its heartbeat) is in
-- sql/functions/chat_runners.sql and sql/queries/chat_runners.sql.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
--
-- A lease: a runner holds a chat while chats.worker_id is its id; chats.started_at names the run
-- (the same runner may claim the chat again after an edit). The lease lasts while the runner's
-- chat_runners row is fresh: one heartbeat per runner renews all its leases, and a wide chats row
-- is written only when a turn starts and ends (chat_run_lease_expired). Only the holder of the
-- current lease writes a turn's output. Admitting a new turn (chat_admit_message: a send, an edit, a promotion)
-- releases the lease, so a superseded run can never write after the new turn's message. The
-- holder learns that its turn must stop from NOTIFY chat_runner (chats__notify_runner) or,
-- failing that, from its next heartbeat.
--
-- WARNING (lock order, sql/functions/shared.sql): like every transition, these lock the chat row
-- (FOR NO KEY UPDATE), then touch its messages and queue; several chats only in id order.

-- The key a turn's model call uses and who initiated the turn (GetChatForRunByID): the route of
-- chat_provider_key_route with the sealed key it names (the owner's own, or the provider's; none
-- through the gateway, which applies its own), and the API key of the newest message a user sent
-- (a message or tool results, not an agent's context file; the chat's creating key only when there
-- is none) with whether it is still active. A deleted key gives NULL, which fails closed rather
-- than falling back to the chat's. A function (plpgsql caches its statements' plans per
-- connection) rather than four more joins of that query: those made planning every turn's query
-- take three times as long (docs/sql.md, chat_run_model_key).
CREATE OR REPLACE FUNCTION chat_run_model_key(
  p_chat chats, p_provider chat_providers, p_gateway boolean,
  OUT key_source text, OUT unavailable_reason text, OUT api_key_ciphertext bytea,
  OUT initiator_api_key_id text, OUT initiator_key_active boolean
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_user_key bytea;
  v_sent record;
  v_key api_keys;
BEGIN
  SELECT k.api_key_ciphertext INTO v_user_key FROM chat_provider_user_keys k
  WHERE k.provider_id = p_provider.id AND k.user_id = p_chat.owner_id;
  SELECT r.key_source, r.unavailable_reason INTO key_source, unavailable_reason
  FROM chat_provider_key_route(p_provider, v_user_key IS NOT NULL, p_gateway) r;
  api_key_ciphertext := CASE
    WHEN key_source = 'user' THEN v_user_key
    WHEN key_source = 'central' AND NOT p_gateway THEN p_provider.api_key_ciphertext
  END;
  SELECT um.id, um.api_key_id INTO v_sent FROM chat_messages um
  WHERE um.chat_id = p_chat.id AND um.role IN ('user', 'tool') AND um.created_by IS NOT NULL
    AND um.visibility <> 'model' AND NOT um.deleted
  ORDER BY um.id DESC LIMIT 1;
  SELECT * INTO v_key FROM api_keys
  WHERE id = CASE WHEN v_sent.id IS NULL THEN p_chat.api_key_id ELSE v_sent.api_key_id END;
  initiator_api_key_id := v_key.id;
  initiator_key_active := v_key.id IS NOT NULL
    AND (v_key.expires_at IS NULL OR v_key.expires_at > now());
END;
$$;

-- The cost of a step in micros: prices are micros per million tokens, cached input is billed at
-- the cache prices and only the rest at the input price. NULL for a model without pricing (free).
CREATE OR REPLACE FUNCTION chat_usage_cost_micros(
  p_model_config_id uuid, p_input_tokens bigint, p_output_tokens bigint,
  p_cache_read_tokens bigint, p_cache_write_tokens bigint
) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT round((
      greatest(COALESCE(p_input_tokens, 0) - COALESCE(p_cache_read_tokens, 0)
        - COALESCE(p_cache_write_tokens, 0), 0)::numeric * COALESCE(m.input_price_micros, 0)
      + COALESCE(p_output_tokens, 0)::numeric * COALESCE(m.output_price_micros, 0)
      + COALESCE(p_cache_read_tokens, 0)::numeric * COALESCE(m.cache_read_price_micros, 0)
      + COALESCE(p_cache_write_tokens, 0)::numeric * COALESCE(m.cache_write_price_micros, 0)
    ) / 1000000)::bigint
  FROM chat_model_configs m
  WHERE m.id = p_model_config_id
    AND num_nonnulls(m.input_price_micros, m.output_price_micros, m.cache_read_price_micros,
      m.cache_write_price_micros) > 0;
$$;

-- The body of chat_run_insert_messages and chat_run_keep_usage (below): every message, or
-- (p_usage_only) the messages with usage, deleted and model-only.
CREATE OR REPLACE FUNCTION chat_run_store_messages(
  p_chat_id uuid, p_model_config_id uuid, p_messages jsonb, p_usage_only boolean
) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO chat_messages (
    chat_id, role, content, visibility, deleted, model_config_id, input_tokens, output_tokens,
    total_tokens, reasoning_tokens, cache_creation_tokens, cache_read_tokens, context_limit,
    total_cost_micros, runtime_ms, provider_response_id
  )
  SELECT p_chat_id, (m ->> 'role')::chat_message_role, m -> 'content',
    CASE WHEN p_usage_only THEN 'model' ELSE 'both' END::chat_message_visibility, p_usage_only,
    p_model_config_id,
    (m ->> 'input_tokens')::bigint, (m ->> 'output_tokens')::bigint,
    (m ->> 'total_tokens')::bigint, (m ->> 'reasoning_tokens')::bigint,
    (m ->> 'cache_creation_tokens')::bigint, (m ->> 'cache_read_tokens')::bigint,
    CASE WHEN m ? 'input_tokens' THEN c.context_limit END,
    CASE WHEN m ? 'input_tokens' THEN chat_usage_cost_micros(p_model_config_id,
      (m ->> 'input_tokens')::bigint, (m ->> 'output_tokens')::bigint,
      (m ->> 'cache_read_tokens')::bigint, (m ->> 'cache_creation_tokens')::bigint) END,
    (m ->> 'runtime_ms')::bigint, m ->> 'provider_response_id'
  FROM jsonb_array_elements(p_messages) WITH ORDINALITY AS e(m, n)
  LEFT JOIN chat_model_configs c ON c.id = p_model_config_id
  WHERE NOT p_usage_only OR (m ? 'input_tokens'
    -- Kept once: a finish repeated for the same step finds its response already stored.
    AND NOT EXISTS (SELECT 1 FROM chat_messages k
      WHERE k.chat_id = p_chat_id AND k.provider_response_id = m ->> 'provider_response_id'))
  ORDER BY e.n;
$$;

-- Stores a step's messages (assistant, then tool) with their usage; the cost comes from the
-- model's pricing and the context limit from its config.
-- p_messages: [{role, content, input_tokens, output_tokens, total_tokens, reasoning_tokens,
--   cache_creation_tokens, cache_read_tokens, runtime_ms, provider_response_id}]
CREATE OR REPLACE FUNCTION chat_run_insert_messages(
  p_chat_id uuid, p_model_config_id uuid, p_messages jsonb
) RETURNS void
LANGUAGE sql AS $$
  SELECT chat_run_store_messages(p_chat_id, p_model_config_id, p_messages, false);
$$;

-- A turn whose output is not kept (its lease was lost to an edit or to recovery, or its chat was
-- archived) still called the model, and its cost counts (docs/api.md "Spend limits": an edit does
-- not refund a model call): the messages that carry usage are stored deleted and model-only, so
-- the cost rollup counts them and no history, prompt, stream or tool-call rule ever sees them.
CREATE OR REPLACE FUNCTION chat_run_keep_usage(
  p_chat_id uuid, p_model_config_id uuid, p_messages jsonb
) RETURNS void
LANGUAGE sql AS $$
  SELECT chat_run_store_messages(p_chat_id, p_model_config_id, p_messages, true);
$$;

-- The runner's claim (ClaimPendingChats): the oldest pending, unarchived chats
-- (chats_pending_idx), at most p_batch_size, leased to p_worker_id and set running.
-- SKIP LOCKED: a chat another runner is claiming, or a request is changing, is left for the next
-- claim instead of waited for, so runners never block each other and never take the same chat. A
-- pending chat holds no lease: admitting its turn released any (chat_admit_message).
-- The runner's row is locked first (lock order 3b) and written last, with the slots it has left:
-- its proof of life, which chat_runners_reap's DELETE re-checks after waiting for this lock, so a
-- runner's row is never reaped under a claim that leases chats to it. A runner whose row is gone
-- (presumed dead after a long silence, and reaped) claims nothing until its heartbeat registers
-- it again. With nothing pending (most polls) it takes no lock and writes only a changed count of
-- free slots, so the chooser (chat_runner_choose) sees a runner whose turns ended as free again.
-- The chats' heartbeat_at stays NULL: only the previous release's runners renew it.
CREATE OR REPLACE FUNCTION chat_run_claim(p_worker_id uuid, p_free_slots integer, p_batch_size integer)
RETURNS TABLE (id uuid, started_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_claimed integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM chats p WHERE p.status = 'pending' AND NOT p.archived) THEN
    UPDATE chat_runners r SET free_slots = p_free_slots
    WHERE r.id = p_worker_id AND r.free_slots <> p_free_slots;
    RETURN;
  END IF;
  PERFORM 1 FROM chat_runners r WHERE r.id = p_worker_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  -- status: pending -> running (docs/sql.md "Chat status").
  RETURN QUERY
  UPDATE chats c
  SET status = 'running', worker_id = p_worker_id, started_at = now(), heartbeat_at = NULL,
    last_error = NULL
  FROM (
    SELECT p.id
    FROM chats p
    WHERE p.status = 'pending' AND NOT p.archived
    ORDER BY p.status_changed_at, p.id
    LIMIT p_batch_size
    FOR NO KEY UPDATE SKIP LOCKED
  ) picked
  WHERE c.id = picked.id
  RETURNING c.id, c.started_at;
  GET DIAGNOSTICS v_claimed = ROW_COUNT;
  UPDATE chat_runners r
  SET heartbeat_at = now(), free_slots = greatest(p_free_slots - v_claimed, 0)
  WHERE r.id = p_worker_id;
END;
$$;

-- Whether a chat's lease belongs to a runner presumed dead (recovery hands the chat back): its
-- runner's chat_runners row has not been renewed for p_stale_after; or it has no row (a runner of
-- the previous release, which renews chats.heartbeat_at instead) and the chat's own heartbeat_at
-- is that old, or absent (a lease nobody renews).
CREATE OR REPLACE FUNCTION chat_run_lease_expired(p_chat chats, p_stale_after interval)
RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT p_chat.worker_id IS NOT NULL AND COALESCE(
    (SELECT r.heartbeat_at < now() - p_stale_after FROM chat_runners r WHERE r.id = p_chat.worker_id),
    p_chat.heartbeat_at IS NULL OR p_chat.heartbeat_at < now() - p_stale_after);
$$;

-- The chat row when the caller holds its current lease (locked), else NULL.
CREATE OR REPLACE FUNCTION chat_run_lock_lease(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz
) RETURNS chats
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id FOR NO KEY UPDATE;
  IF NOT FOUND OR v_chat.worker_id IS DISTINCT FROM p_worker_id
     OR v_chat.started_at IS DISTINCT FROM p_started_at THEN
    RETURN NULL;
  END IF;
  RETURN v_chat;
END;
$$;

-- The rule of a step that did not end the turn (chat_run_save_tool_step's first part): stores its
-- messages while the lease holds and the chat still runs. Returns false when it stored nothing:
-- the turn was stopped or taken away, and the runner goes on to chat_run_finish.
CREATE OR REPLACE FUNCTION chat_run_save_step(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz, p_model_config_id uuid,
  p_messages jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  v_chat := chat_run_lock_lease(p_chat_id, p_worker_id, p_started_at);
  IF v_chat.id IS NULL OR v_chat.status <> 'running' OR v_chat.archived THEN
    RETURN false;
  END IF;
  PERFORM chat_run_insert_messages(p_chat_id, p_model_config_id, p_messages);
  -- What the run streamed so far is in these messages now (sql/functions/chat_stream_parts.sql).
  PERFORM chat_stream_parts_saved(p_chat_id);
  RETURN true;
END;
$$;

-- A step whose calls the runner does not answer alone (docs/api.md "Workspace tools", "Plan
-- mode"): stores its messages (chat_run_save_step's rule, which it calls: while the lease holds and
-- the chat still runs), then in the same transaction
--   p_plan_file {file_id, markdown}: the chat's plan file plan.md, a new version linked to the
--     chat (propose_plan, or write_file/edit_files of plan.md in plan mode; the runner chose the
--     id so the call's result can name it);
--   p_calls [{tool_call_id, tool_name, args, timeout_ms}]: workspace tool calls for the agent the
--     chat is bound to (chat_tool_calls, pending until the agent starts them; see
--     sql/functions/chat_tool_calls.sql).
-- Returns false when it stored nothing: the turn was stopped or taken away.
CREATE OR REPLACE FUNCTION chat_run_save_tool_step(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz, p_model_config_id uuid,
  p_messages jsonb, p_plan_file jsonb, p_calls jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT chat_run_save_step(p_chat_id, p_worker_id, p_started_at, p_model_config_id, p_messages) THEN
    RETURN false;
  END IF;
  -- The chat row is locked by the step's lease check: its owner, organization and agent stand.
  IF p_plan_file IS NOT NULL THEN
    INSERT INTO chat_files (id, owner_id, organization_id, name, mimetype, data)
    SELECT (p_plan_file ->> 'file_id')::uuid, c.owner_id, c.organization_id, 'plan.md',
      'text/markdown', convert_to(p_plan_file ->> 'markdown', 'UTF8')
    FROM chats c WHERE c.id = p_chat_id;
    INSERT INTO chat_file_links (chat_id, file_id) VALUES (p_chat_id, (p_plan_file ->> 'file_id')::uuid);
  END IF;
  INSERT INTO chat_tool_calls (chat_id, agent_id, tool_call_id, tool_name, args, deadline_at)
  SELECT p_chat_id, c.agent_id, e.call ->> 'tool_call_id', e.call ->> 'tool_name',
    COALESCE(e.call -> 'args', '{}'),
    now() + make_interval(secs => (e.call ->> 'timeout_ms')::double precision / 1000)
  FROM chats c, jsonb_array_elements(COALESCE(p_calls, '[]')) WITH ORDINALITY AS e(call, n)
  WHERE c.id = p_chat_id
  ORDER BY e.n;
  RETURN true;
END;
$$;

-- The previous release's save of a proposed plan (servers of that release call it while a new one
-- rolls out; drop it in the next): chat_run_save_tool_step with the plan file only.
CREATE OR REPLACE FUNCTION chat_run_save_plan(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz, p_model_config_id uuid,
  p_file_id uuid, p_plan_markdown text, p_messages jsonb
) RETURNS boolean
LANGUAGE sql AS $$
  SELECT chat_run_save_tool_step(p_chat_id, p_worker_id, p_started_at, p_model_config_id,
    p_messages, jsonb_build_object('file_id', p_file_id, 'markdown', p_plan_markdown), '[]');
$$;

-- Ends a turn: stores its last messages and releases the lease, in one transaction.
--   p_outcome 'completed' -> waiting; 'requires_action' (client tool calls) -> requires_action;
--   'error' (p_error, a ChatError) -> error.
-- What happened to the chat meanwhile wins over p_outcome; the returned outcome says which:
--   'lost':        the lease is gone (recovered, a new turn admitted by an edit, or claimed
--                  again): only the cost is kept (chat_run_keep_usage);
--   'discarded':   archived: only the cost is kept, the lease is released;
--   'interrupted': the partial output is kept, the status stays waiting;
--   else p_outcome.
-- Unanswered tool calls of a turn that does not end in requires_action get error results, so the
-- history stays valid for the next model call. last_turn_summary is cleared unless the turn
-- completed (the runner writes the new one afterwards). Unless the chat now waits for tool
-- results, the head of the queue is admitted (the message keeps its model).
-- Also returns the chat's status, updated_at and title_source after all that.
CREATE OR REPLACE FUNCTION chat_run_finish(
  p_chat_id uuid, p_worker_id uuid, p_started_at timestamptz, p_model_config_id uuid,
  p_messages jsonb, p_outcome text, p_error jsonb,
  OUT outcome text, OUT status chat_status, OUT updated_at timestamptz,
  OUT title_source chat_title_source
)
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_status chat_status;
  v_interrupted boolean;
BEGIN
  IF p_outcome NOT IN ('completed', 'requires_action', 'error') THEN
    RAISE EXCEPTION 'Unknown turn outcome %.', p_outcome USING ERRCODE = '22023';
  END IF;
  v_chat := chat_run_lock_lease(p_chat_id, p_worker_id, p_started_at);
  IF v_chat.id IS NULL THEN
    outcome := 'lost';
    IF EXISTS (SELECT 1 FROM chats WHERE id = p_chat_id) THEN
      PERFORM chat_run_keep_usage(p_chat_id, p_model_config_id, p_messages);
    END IF;
    RETURN;
  END IF;
  -- status: running (archived) -> waiting, nothing stored but the cost (docs/sql.md "Chat status").
  IF v_chat.archived THEN
    PERFORM chat_run_keep_usage(p_chat_id, p_model_config_id, p_messages);
    UPDATE chats c SET worker_id = NULL, heartbeat_at = NULL,
      status = CASE WHEN c.status = 'running' THEN 'waiting' ELSE c.status END
    WHERE c.id = p_chat_id
    RETURNING c.status, c.updated_at, c.title_source INTO status, updated_at, title_source;
    outcome := 'discarded';
    RETURN;
  END IF;

  PERFORM chat_run_insert_messages(p_chat_id, p_model_config_id, p_messages);
  v_interrupted := v_chat.status = 'waiting';
  v_status := CASE
    WHEN v_interrupted THEN 'waiting'
    WHEN p_outcome = 'requires_action' THEN 'requires_action'
    WHEN p_outcome = 'error' THEN 'error'
    ELSE 'waiting'
  END;
  IF v_status <> 'requires_action' THEN
    PERFORM chat_fail_pending_tool_calls(p_chat_id,
      CASE WHEN v_interrupted THEN 'interrupted' ELSE 'the turn ended before this tool ran' END);
  END IF;
  -- status: running -> waiting (completed, or interrupted meanwhile), requires_action or error
  -- (docs/sql.md "Chat status").
  UPDATE chats c SET status = v_status, worker_id = NULL, heartbeat_at = NULL,
    last_error = CASE WHEN v_status = 'error' THEN p_error END,
    last_turn_summary = CASE WHEN v_status = 'waiting' AND NOT v_interrupted
      THEN c.last_turn_summary END
  WHERE c.id = p_chat_id
  RETURNING * INTO v_chat;
  IF v_status <> 'requires_action' THEN
    PERFORM chat_admit_queue_head(v_chat);
  END IF;
  -- Last (lock order 7, after the calls above): the turn's streamed output is stored now.
  PERFORM chat_stream_parts_saved(p_chat_id);
  outcome := CASE WHEN v_interrupted THEN 'interrupted' ELSE p_outcome END;
  SELECT c.status, c.updated_at, c.title_source INTO status, updated_at, title_source
  FROM chats c WHERE c.id = p_chat_id;
END;
$$;

-- Releases one chat's lease without a turn end: a running chat goes back to pending (its turn
-- runs again, from the start, on some runner, and waits for the workspace calls it recorded); an
-- interrupted one answers the calls its turn left open, as chat_run_finish would have, and admits
-- its queue head. An archived running chat becomes waiting, as chat_run_finish leaves it:
-- archiving ended its turn.
CREATE OR REPLACE FUNCTION chat_run_release_locked(p_chat chats) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  -- status: running -> pending (archived: waiting) (docs/sql.md "Chat status").
  UPDATE chats SET worker_id = NULL, heartbeat_at = NULL,
    status = CASE WHEN status <> 'running' THEN status WHEN archived THEN 'waiting' ELSE 'pending' END
  WHERE id = p_chat.id
  RETURNING * INTO v_chat;
  IF v_chat.status = 'waiting' AND NOT v_chat.archived THEN
    PERFORM chat_fail_pending_tool_calls(v_chat.id, 'interrupted');
  END IF;
  IF v_chat.status = 'waiting' THEN
    PERFORM chat_admit_queue_head(v_chat);
  END IF;
END;
$$;

-- Shutdown: the runner's row goes, then every lease of this runner is released
-- (chat_run_release_locked). Returns how many. The row first (lock order 3b, before chat rows),
-- and so the chats released here wake another runner, never this one (chat_runner_choose).
CREATE OR REPLACE FUNCTION chat_run_release_worker(p_worker_id uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_count integer := 0;
BEGIN
  DELETE FROM chat_runners WHERE id = p_worker_id;
  -- The runner stops these turns itself: chats__notify_runner need not tell every runner about
  -- each of them (10,000 notifications for a runner with 10,000 turns).
  PERFORM set_config('pgchatd.releasing_own_leases', 'on', true);
  FOR v_chat IN
    SELECT * FROM chats WHERE worker_id = p_worker_id ORDER BY id FOR NO KEY UPDATE
  LOOP
    PERFORM chat_run_release_locked(v_chat);
    v_count := v_count + 1;
  END LOOP;
  PERFORM set_config('pgchatd.releasing_own_leases', '', true);
  RETURN v_count;
END;
$$;

-- A live runner's leases that no turn of it runs any more: a turn that failed because the
-- database went away (its lease is renewed by the runner's heartbeat, so it would never go stale),
-- or a claim that committed but whose answer the runner never received. Released as a stale lease
-- is (chat_run_release_locked: running back to pending, where a runner claims it again), except
-- the leases (chat, started_at) in p_running / p_running_started_at, which the runner's turns
-- hold: a lease is one run, not one chat, since a chat made pending mid-turn (an edit) and claimed
-- again has a new lease while the old run is still stopping.
--
-- Returns how many were released, and how many were skipped because another transaction held
-- them (a stream marking the chat read, a send queueing behind it): the runner calls again at its
-- next heartbeat while any were skipped, rather than waiting here with its row locked, which
-- would hold up its heartbeats and claims behind whatever holds the chat.
--
-- The runner's row first (lock order 3b, as claims and chat_run_release_worker take it): a claim
-- of this runner holds that row until it commits, so a claim whose answer is being lost is waited
-- for and then seen, not missed by the snapshot. Then every chat it releases, locked in one
-- statement in id order before any is changed (lock order 4). The waits left, each with the
-- runner's row held: for the row itself (behind a claim or a reaper), for a table lock (a
-- migration), and, releasing an interrupted chat, for a tool call that chat_tool_call_start holds
-- (lock level 6's exception). lock_timeout bounds them: the call fails whole, and the runner tries
-- again at its next heartbeat. Set on the function, so the caller's own value is back after it.
CREATE OR REPLACE FUNCTION chat_run_release_orphans(
  p_worker_id uuid, p_running uuid[], p_running_started_at timestamptz[],
  OUT released integer, OUT skipped integer
)
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
DECLARE
  v_chat chats;
  v_ids uuid[];
BEGIN
  -- A NULL in either array would make the comparison NULL for every chat and release nothing.
  IF p_running IS NULL OR p_running_started_at IS NULL
     OR array_ndims(p_running) > 1 OR array_ndims(p_running_started_at) > 1
     OR cardinality(p_running) <> cardinality(p_running_started_at)
     OR array_position(p_running, NULL) IS NOT NULL
     OR array_position(p_running_started_at, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'running leases must be two arrays of one length without NULLs'
      USING ERRCODE = '22023';
  END IF;
  PERFORM 1 FROM chat_runners WHERE id = p_worker_id FOR NO KEY UPDATE;
  SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}') INTO v_ids
  FROM (
    SELECT c.id FROM chats c
    WHERE c.worker_id = p_worker_id
      AND NOT EXISTS (
        SELECT 1 FROM unnest(p_running, p_running_started_at) AS r (id, started_at)
        WHERE r.id = c.id AND r.started_at = c.started_at
      )
    ORDER BY c.id FOR NO KEY UPDATE OF c SKIP LOCKED
  ) l;
  released := 0;
  FOR v_chat IN SELECT * FROM chats WHERE id = ANY (v_ids) ORDER BY id LOOP
    PERFORM chat_run_release_locked(v_chat);
    released := released + 1;
  END LOOP;
  -- Orphans still leased to this runner that another transaction held.
  SELECT count(*) INTO skipped FROM chats c
  WHERE c.worker_id = p_worker_id AND c.id <> ALL (v_ids)
    AND NOT EXISTS (
      SELECT 1 FROM unnest(p_running, p_running_started_at) AS r (id, started_at)
      WHERE r.id = c.id AND r.started_at = c.started_at
    );
END;
$$;

-- The recovery pass every runner makes once per heartbeat interval, one chat at a time: the
-- runner lists the candidates (ListChatRecoveryCandidates) and calls this for each, every call its
-- own transaction, so a chat whose recovery fails is logged and skipped, never stopping the
-- recovery of the others. It takes the chat's row lock with SKIP LOCKED (a chat another
-- transaction holds is being changed; the next pass sees it again) and does what still applies:
--   stale_lease:   the holder stopped heartbeating (chat_run_lease_expired) -> the lease is
--                  released (chat_run_release_locked: running back to pending);
--   tool_timeout:  requires_action for longer than p_tool_results_timeout -> error results for
--                  the pending calls, status error (ChatError kind timeout), queue head admitted.
--                  Not for an archived chat: it takes no message; once unarchived the timeout
--                  applies again;
--   queue:         waiting, not leased, not archived, with a queue -> its head is admitted.
-- Returns what it did, or NULL.
CREATE OR REPLACE FUNCTION chat_run_recover_chat(
  p_chat_id uuid, p_stale_after interval, p_tool_results_timeout interval
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id FOR NO KEY UPDATE SKIP LOCKED;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF chat_run_lease_expired(v_chat, p_stale_after) THEN
    PERFORM chat_run_release_locked(v_chat);
    RETURN 'stale_lease';
  END IF;
  IF v_chat.status = 'requires_action' AND NOT v_chat.archived
     AND v_chat.status_changed_at < now() - p_tool_results_timeout THEN
    PERFORM chat_fail_pending_tool_calls(v_chat.id, 'no tool result arrived in time');
    -- status: requires_action -> error (the tool results timed out) (docs/sql.md "Chat status").
    UPDATE chats c SET status = 'error', last_turn_summary = NULL,
      last_error = jsonb_build_object(
        'message', 'No tool results arrived in time.',
        'kind', 'timeout', 'provider', NULL, 'retryable', false, 'status_code', NULL,
        'detail', format('The chat waited %s for the results of its client tool calls.',
          p_tool_results_timeout))
    WHERE c.id = v_chat.id
    RETURNING * INTO v_chat;
    PERFORM chat_admit_queue_head(v_chat);
    RETURN 'tool_timeout';
  END IF;
  IF v_chat.status = 'waiting' AND v_chat.worker_id IS NULL AND NOT v_chat.archived
     AND chat_admit_queue_head(v_chat) IS NOT NULL THEN
    RETURN 'queue';
  END IF;
  RETURN NULL;
END;
$$;
