-- The live runners (chat_runners, 00062): who a pending chat wakes. Registration, the heartbeat
-- and the reaping of dead runners' rows are single statements in sql/queries/chat_runners.sql;
-- the claim and lease expiry are in sql/functions/chat_runs.sql.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
--
-- Why one runner, not all (docs/operations.md "Scaling"): when every runner woke for every pending
-- chat, each ran a claim of its own and all but one found nothing; ten servers on one database
-- spent 74 transactions per message instead of 11.

-- The runner a chat that became pending wakes (chats__notify_pending): one that heartbeats (within
-- three of its intervals) and reported a free slot, this session's own runner first, else one at
-- random. is_local: the session's own (pgchatd.runner_id, set on the connections of a process that
-- runs a runner, src/db/pool.ts), which that process wakes itself after its commit, so no NOTIFY
-- is needed. NULL when no runner has a free slot: a busy runner claims again as each of its turns
-- ends, and every runner polls once a second.
CREATE OR REPLACE FUNCTION chat_runner_choose(OUT runner_id uuid, OUT is_local boolean)
LANGUAGE plpgsql AS $$
DECLARE
  v_local uuid := NULLIF(current_setting('pgchatd.runner_id', true), '')::uuid;
BEGIN
  -- A few rows (one per runner): a scan is the plan.
  SELECT r.id, r.id IS NOT DISTINCT FROM v_local INTO runner_id, is_local
  FROM chat_runners r
  WHERE r.free_slots > 0 AND r.heartbeat_at > now() - 3 * r.heartbeat_interval
  ORDER BY r.id IS NOT DISTINCT FROM v_local DESC, random()
  LIMIT 1;
END;
$$;
