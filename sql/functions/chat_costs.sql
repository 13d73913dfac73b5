-- Cost analytics: what assistant messages cost, over a window, for one owner or for everyone
-- (docs/sql.md "Cost and spend limits"). The rollups themselves are the queries of
-- sql/queries/chat_costs.sql; these functions give them their rows.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
--
-- Cost counts assistant messages, deleted ones too (an edit does not refund a model call):
-- priced ones have total_cost_micros, unpriced ones (a model without pricing) are counted apart.

-- A window [p_start, p_end) as the daily rollup sees it: the whole UTC days inside it
-- [first_day, end_day), and the partial days at either end, read from chat_messages:
-- [p_start, head_end) and [tail_start, p_end). A window that starts and ends at UTC midnights has
-- no partial days; one inside a single day is all head.
CREATE OR REPLACE FUNCTION chat_cost_window(p_start timestamptz, p_end timestamptz)
-- A set of one row only so that the planner inlines it and folds it to constants.
RETURNS TABLE (first_day date, end_day date, head_end timestamptz, tail_start timestamptz)
LANGUAGE sql IMMUTABLE AS $$
  SELECT d.first_day, d.end_day,
    least(d.first_day::timestamp AT TIME ZONE 'UTC', p_end),
    greatest(d.end_day, d.first_day)::timestamp AT TIME ZONE 'UTC'
  FROM (
    SELECT (p_start AT TIME ZONE 'UTC')::date
        + CASE WHEN (p_start AT TIME ZONE 'UTC')::time = '00:00' THEN 0 ELSE 1 END AS first_day,
      (p_end AT TIME ZONE 'UTC')::date AS end_day
  ) d;
$$;

-- The cost rows of [p_start, p_end): the rollup's whole days, then the messages of the partial
-- days, in one shape; the rollups of sql/queries/chat_costs.sql group them. The planner inlines it
-- (a single SQL SELECT) and pushes a caller's `owner_id = ...` into both parts, so one owner's
-- rows come through chat_cost_daily_owner_idx, everyone's through chat_cost_daily_day_idx, and
-- the partial days through chat_messages_assistant_created_at_idx.
CREATE OR REPLACE FUNCTION chat_cost_rows(p_start timestamptz, p_end timestamptz)
RETURNS TABLE (
  chat_id uuid, root_chat_id uuid, owner_id uuid, organization_id uuid, model_config_id uuid,
  total_cost_micros bigint, priced_message_count bigint, unpriced_message_count bigint,
  input_tokens bigint, output_tokens bigint, cache_read_tokens bigint,
  cache_creation_tokens bigint, runtime_ms bigint
)
LANGUAGE sql STABLE AS $$
  SELECT d.chat_id, d.root_chat_id, d.owner_id, d.organization_id, d.model_config_id,
    d.total_cost_micros, d.priced_message_count, d.unpriced_message_count, d.input_tokens,
    d.output_tokens, d.cache_read_tokens, d.cache_creation_tokens, d.runtime_ms
  FROM chat_cost_daily d, chat_cost_window(p_start, p_end) w
  WHERE d.day >= w.first_day AND d.day < w.end_day
  UNION ALL
  SELECT m.chat_id, COALESCE(c.root_chat_id, c.id), c.owner_id, c.organization_id,
    m.model_config_id, COALESCE(m.total_cost_micros, 0),
    (m.total_cost_micros IS NOT NULL)::int, (m.total_cost_micros IS NULL)::int,
    COALESCE(m.input_tokens, 0), COALESCE(m.output_tokens, 0), COALESCE(m.cache_read_tokens, 0),
    COALESCE(m.cache_creation_tokens, 0), COALESCE(m.runtime_ms, 0)
  FROM chat_cost_window(p_start, p_end) w
  -- Two plain ranges rather than an OR of them: each is an index-only range scan, where an OR
  -- would become a bitmap scan that reads the heap.
  CROSS JOIN LATERAL (VALUES (p_start, w.head_end), (w.tail_start, p_end)) part(lo, hi)
  JOIN chat_messages m ON m.role = 'assistant' AND m.created_at >= part.lo
    AND m.created_at < part.hi
  JOIN chats c ON c.id = m.chat_id;
$$;

-- Rebuilds chat_cost_daily and chat_spend_daily from chat_messages, the way migration 00027
-- first filled them: for messages loaded with triggers off (session_replication_role = replica,
-- as `npm run bench -- cost` seeds them), or a rollup in doubt. Takes the tables' locks, so the
-- trigger's upserts wait. Its aggregation is the trigger's (chat_messages__roll_up_cost) over the
-- whole table instead of a transition table, which no function can take; the test "rebuilding the
-- rollups from the messages gives exactly what the trigger kept" holds the two together.
CREATE OR REPLACE FUNCTION chat_costs_rebuild_daily() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_rows bigint;
BEGIN
  LOCK TABLE chat_cost_daily, chat_spend_daily IN EXCLUSIVE MODE;
  DELETE FROM chat_cost_daily;
  INSERT INTO chat_cost_daily (
    chat_id, day, model_config_id, owner_id, organization_id, root_chat_id, total_cost_micros,
    priced_message_count, unpriced_message_count, input_tokens, output_tokens,
    cache_read_tokens, cache_creation_tokens, runtime_ms
  )
  SELECT m.chat_id, (m.created_at AT TIME ZONE 'UTC')::date, m.model_config_id, c.owner_id,
    c.organization_id, COALESCE(c.root_chat_id, c.id), COALESCE(sum(m.total_cost_micros), 0),
    count(m.total_cost_micros), count(*) - count(m.total_cost_micros),
    COALESCE(sum(m.input_tokens), 0), COALESCE(sum(m.output_tokens), 0),
    COALESCE(sum(m.cache_read_tokens), 0), COALESCE(sum(m.cache_creation_tokens), 0),
    COALESCE(sum(m.runtime_ms), 0)
  FROM chat_messages m
  JOIN chats c ON c.id = m.chat_id
  WHERE m.role = 'assistant'
  GROUP BY 1, 2, 3, 4, 5, 6
  -- In day order, as the trigger writes them: a window's rows share heap pages.
  ORDER BY 2;
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  DELETE FROM chat_spend_daily;
  INSERT INTO chat_spend_daily (owner_id, organization_id, day, total_cost_micros)
  SELECT owner_id, organization_id, day, sum(total_cost_micros)
  FROM chat_cost_daily
  WHERE total_cost_micros > 0
  GROUP BY 1, 2, 3;
  RETURN v_rows;
END;
$$;
