-- Fills chat_cost_daily and chat_spend_daily (00024) from the assistant messages stored so far.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
--
-- The rollup counts every assistant message from here on. Servers of the previous version may
-- still store messages until the routines are re-applied after the migrations (with the trigger
-- chat_messages_600_roll_up_cost of sql/triggers/chat_messages.sql): this bridging trigger counts
-- those, and the lock makes them wait until it exists, so none falls between the backfill below
-- and the trigger. The routines replace the function with its current body.
-- The lock is the only one this migration takes on a busy table: message inserts wait for the
-- backfill (about 4 s per million assistant messages on the benchmark machine), nothing else does.
LOCK TABLE chat_messages IN SHARE ROW EXCLUSIVE MODE;

CREATE FUNCTION chat_messages__roll_up_cost() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO chat_cost_daily AS d (
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
  FROM new_rows m
  JOIN chats c ON c.id = m.chat_id
  WHERE m.role = 'assistant'
  GROUP BY 1, 2, 3, 4, 5, 6
  ON CONFLICT (chat_id, day, model_config_id) DO UPDATE SET
    total_cost_micros = d.total_cost_micros + excluded.total_cost_micros,
    priced_message_count = d.priced_message_count + excluded.priced_message_count,
    unpriced_message_count = d.unpriced_message_count + excluded.unpriced_message_count,
    input_tokens = d.input_tokens + excluded.input_tokens,
    output_tokens = d.output_tokens + excluded.output_tokens,
    cache_read_tokens = d.cache_read_tokens + excluded.cache_read_tokens,
    cache_creation_tokens = d.cache_creation_tokens + excluded.cache_creation_tokens,
    runtime_ms = d.runtime_ms + excluded.runtime_ms;
  INSERT INTO chat_spend_daily AS s (owner_id, organization_id, day, total_cost_micros)
  SELECT c.owner_id, c.organization_id, (m.created_at AT TIME ZONE 'UTC')::date,
    sum(m.total_cost_micros)
  FROM new_rows m
  JOIN chats c ON c.id = m.chat_id
  WHERE m.role = 'assistant' AND m.total_cost_micros > 0
  GROUP BY 1, 2, 3
  ORDER BY 1, 2, 3
  ON CONFLICT (owner_id, organization_id, day) DO UPDATE SET
    total_cost_micros = s.total_cost_micros + excluded.total_cost_micros;
  RETURN NULL;
END;
$$;

CREATE TRIGGER chat_messages_600_roll_up_cost
  AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_messages__roll_up_cost();

INSERT INTO chat_cost_daily (
  chat_id, day, model_config_id, owner_id, organization_id, root_chat_id, total_cost_micros,
  priced_message_count, unpriced_message_count, input_tokens, output_tokens, cache_read_tokens,
  cache_creation_tokens, runtime_ms
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

INSERT INTO chat_spend_daily (owner_id, organization_id, day, total_cost_micros)
SELECT owner_id, organization_id, day, sum(total_cost_micros)
FROM chat_cost_daily
WHERE total_cost_micros > 0
GROUP BY 1, 2, 3;
