-- Spend limits (docs/api.md "Spend limits", docs/sql.md "Cost and spend limits"): which limit
-- applies to an owner in an organization, what they spent in the current period, the check that
-- create and send run under the spend lock, and the audited changes to the limits.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.

-- The UTC period that contains p_now: a day, an ISO week (from Monday) or a calendar month.
-- Like the other functions here, a set of one row (RETURNS TABLE) only so that the planner inlines
-- it into the calling statement, whose plan is then cached: a function the planner cannot inline
-- is planned again on every call, which cost the spend check more than its reads.
CREATE OR REPLACE FUNCTION chat_usage_period(p_period text, p_now timestamptz)
RETURNS TABLE (period_start timestamptz, period_end timestamptz)
LANGUAGE sql IMMUTABLE AS $$
  SELECT s.t AT TIME ZONE 'UTC', (s.t + ('1 ' || p_period)::interval) AT TIME ZONE 'UTC'
  FROM (SELECT date_trunc(p_period, p_now AT TIME ZONE 'UTC') AS t) s;
$$;

-- The limit of an owner in an organization and where it comes from:
--   'none'    the deployment's limit is NULL: nobody is limited, overrides do not apply;
--   'user'    the user's own override;
--   'group'   the smallest override among the user's groups in this organization (groups of
--             other organizations never apply here);
--   'default' the deployment's limit.
CREATE OR REPLACE FUNCTION chat_usage_limit_resolve(p_user_id uuid, p_organization_id uuid)
RETURNS TABLE (spend_limit_micros bigint, source text, period text)
LANGUAGE sql STABLE AS $$
  SELECT
    CASE WHEN g.spend_limit_micros IS NOT NULL
      THEN COALESCE(u.chat_spend_limit_micros, grp.spend_limit_micros, g.spend_limit_micros) END,
    CASE
      WHEN g.spend_limit_micros IS NULL THEN 'none'
      WHEN u.chat_spend_limit_micros IS NOT NULL THEN 'user'
      WHEN grp.spend_limit_micros IS NOT NULL THEN 'group'
      ELSE 'default'
    END,
    g.period
  FROM chat_usage_limit_config g
  LEFT JOIN users u ON u.id = p_user_id
  LEFT JOIN LATERAL (
    SELECT min(gr.chat_spend_limit_micros) AS spend_limit_micros
    FROM group_members gm
    JOIN groups gr ON gr.id = gm.group_id
    WHERE gm.user_id = p_user_id AND gm.organization_id = p_organization_id
  ) grp ON true;
$$;

-- An owner's limit and spend in an organization for the period that contains chat_clock_now().
-- The spend is chat_spend_daily's rows of the period's days (at most 31, index-only on its primary
-- key): periods start at UTC midnights, so no message is read.
CREATE OR REPLACE FUNCTION chat_usage_limit_status(p_user_id uuid, p_organization_id uuid)
RETURNS TABLE (
  is_limited boolean, source text, period text, spend_limit_micros bigint, current_spend bigint,
  period_start timestamptz, period_end timestamptz
)
LANGUAGE sql STABLE AS $$
  SELECT r.source <> 'none', r.source, r.period, r.spend_limit_micros,
    (SELECT COALESCE(sum(d.total_cost_micros), 0)::bigint
     FROM chat_spend_daily d
     WHERE d.owner_id = p_user_id AND d.organization_id = p_organization_id
       AND d.day >= (p.period_start AT TIME ZONE 'UTC')::date
       AND d.day < (p.period_end AT TIME ZONE 'UTC')::date),
    p.period_start, p.period_end
  FROM chat_usage_limit_resolve(p_user_id, p_organization_id) r,
    chat_usage_period(r.period, chat_clock_now()) p;
$$;

-- The check of a create or a send: an owner at or over the limit gets PL409 with DETAIL
-- {spent_micros, limit_micros, resets_at} (src/server/errors.ts answers 409 with these figures).
-- The limit and the spend are read together, in one statement after the owner's spend lock
-- (shared, held to commit): the lock waits for a turn that is storing its cost, and the
-- statement's snapshot then sees that cost and any change to the limits committed meanwhile.
-- Turns already admitted may still finish over the limit: their cost is known only when they
-- end, and the next turn of the owner is refused (usage_limit) when it would start.
CREATE OR REPLACE FUNCTION chat_require_spend_under_limit(p_user_id uuid, p_organization_id uuid)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v record;
BEGIN
  -- Limiting off: no lock, no spend to add up.
  IF (SELECT g.spend_limit_micros IS NULL FROM chat_usage_limit_config g) THEN
    RETURN;
  END IF;
  PERFORM chat_lock_spend(p_user_id, p_organization_id, false);
  SELECT * INTO v FROM chat_usage_limit_status(p_user_id, p_organization_id);
  IF v.is_limited AND v.current_spend >= v.spend_limit_micros THEN
    RAISE EXCEPTION 'You have reached your spend limit for this %.', v.period
      USING ERRCODE = 'PL409',
        DETAIL = json_build_object(
          'spent_micros', v.current_spend,
          'limit_micros', v.spend_limit_micros,
          'resets_at', to_char(v.period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        )::text;
  END IF;
END;
$$;

-- PUT /usage-limits: the deployment's limit (NULL turns limiting off) and period (NULL keeps it),
-- audited.
CREATE OR REPLACE FUNCTION chat_usage_limits_set_config(
  p_actor_id uuid, p_spend_limit_micros bigint, p_period text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_old chat_usage_limit_config;
BEGIN
  SELECT * INTO v_old FROM chat_usage_limit_config FOR UPDATE;
  UPDATE chat_usage_limit_config
  SET spend_limit_micros = p_spend_limit_micros, period = COALESCE(p_period, v_old.period),
    updated_at = now();
  INSERT INTO audit_logs (actor_user_id, action, detail)
  VALUES (p_actor_id, 'usage_limit_config', jsonb_build_object(
    'old', jsonb_build_object('spend_limit_micros', v_old.spend_limit_micros, 'period', v_old.period),
    'new', jsonb_build_object('spend_limit_micros', p_spend_limit_micros,
      'period', COALESCE(p_period, v_old.period))));
END;
$$;

-- PUT (a limit) and DELETE (NULL) /usage-limits/overrides/{user}, audited when it changes.
-- PC404 for an unknown user.
CREATE OR REPLACE FUNCTION chat_usage_limits_set_user_override(
  p_actor_id uuid, p_user_id uuid, p_spend_limit_micros bigint
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_old bigint;
BEGIN
  SELECT chat_spend_limit_micros INTO v_old FROM users WHERE id = p_user_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'User not found.' USING ERRCODE = 'PC404';
  END IF;
  IF v_old IS NOT DISTINCT FROM p_spend_limit_micros THEN
    RETURN;
  END IF;
  UPDATE users SET chat_spend_limit_micros = p_spend_limit_micros WHERE id = p_user_id;
  INSERT INTO audit_logs (actor_user_id, action, detail)
  VALUES (p_actor_id, 'usage_limit_override', jsonb_build_object(
    'user_id', p_user_id, 'old_spend_limit_micros', v_old,
    'new_spend_limit_micros', p_spend_limit_micros));
END;
$$;

-- PUT (a limit) and DELETE (NULL) /usage-limits/group-overrides/{group}, audited when it
-- changes. PC404 for an unknown group.
CREATE OR REPLACE FUNCTION chat_usage_limits_set_group_override(
  p_actor_id uuid, p_group_id uuid, p_spend_limit_micros bigint
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_old bigint;
BEGIN
  SELECT chat_spend_limit_micros INTO v_old FROM groups WHERE id = p_group_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Group not found.' USING ERRCODE = 'PC404';
  END IF;
  IF v_old IS NOT DISTINCT FROM p_spend_limit_micros THEN
    RETURN;
  END IF;
  UPDATE groups SET chat_spend_limit_micros = p_spend_limit_micros WHERE id = p_group_id;
  INSERT INTO audit_logs (actor_user_id, action, detail)
  VALUES (p_actor_id, 'usage_limit_group_override', jsonb_build_object(
    'group_id', p_group_id, 'old_spend_limit_micros', v_old,
    'new_spend_limit_micros', p_spend_limit_micros));
END;
$$;
