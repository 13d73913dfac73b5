-- Cost analytics and spend limits (docs/sql.md "Cost and spend limits").
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- What assistant messages cost, summed per chat, UTC day and model. Every rollup reads this
-- instead of chat_messages: a spend check sums at most a month of one owner's rows, and a 30-day
-- page of every user's cost reads one row per chat, day and model instead of every message.
-- Kept by the statement trigger chat_messages_600_roll_up_cost (sql/triggers/chat_messages.sql)
-- in the transaction that stores the messages; a message's usage never changes afterwards
-- (chat_messages_110_usage_write_once). Rows go with their chat.
CREATE TABLE chat_cost_daily (
  chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
  -- The UTC date of the messages' created_at.
  day date NOT NULL,
  -- No foreign key: model configs are only ever soft-deleted, and the messages hold the key.
  model_config_id uuid,
  -- The chat's owner, organization and root (the chat itself for a root), which never change:
  -- copied so that no rollup joins chats.
  owner_id uuid NOT NULL,
  organization_id uuid NOT NULL,
  root_chat_id uuid NOT NULL,
  total_cost_micros bigint NOT NULL DEFAULT 0,
  priced_message_count bigint NOT NULL DEFAULT 0,
  unpriced_message_count bigint NOT NULL DEFAULT 0,
  input_tokens bigint NOT NULL DEFAULT 0,
  output_tokens bigint NOT NULL DEFAULT 0,
  cache_read_tokens bigint NOT NULL DEFAULT 0,
  cache_creation_tokens bigint NOT NULL DEFAULT 0,
  runtime_ms bigint NOT NULL DEFAULT 0
);
-- The trigger's upsert key; a chat's cost (GET /{chat}/cost) reads its rows by chat id.
CREATE UNIQUE INDEX chat_cost_daily_key ON chat_cost_daily (chat_id, day, model_config_id)
  NULLS NOT DISTINCT;
-- One owner's days: the spend check (owner, organization, current period; index-only) and a
-- user's cost summary.
CREATE INDEX chat_cost_daily_owner_idx ON chat_cost_daily (owner_id, day)
  INCLUDE (organization_id, total_cost_micros);
-- Every owner's days: the per-user cost page.
CREATE INDEX chat_cost_daily_day_idx ON chat_cost_daily (day);

-- The rollup counts every assistant message from here on. Servers of the previous version may
-- still store messages until the routines are re-applied after the migrations (with the trigger
-- chat_messages_600_roll_up_cost of sql/triggers/chat_messages.sql): this bridging trigger counts
-- those, and the lock makes them wait until it exists, so none falls between the backfill below
-- and the trigger. The routines replace the function with its current body.
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
GROUP BY 1, 2, 3, 4, 5, 6;

-- The deployment's spend limit: one row. A NULL limit turns limiting off for everyone (user and
-- group overrides included). The period is a UTC day, an ISO week from Monday, or a calendar month.
CREATE TABLE chat_usage_limit_config (
  singleton boolean PRIMARY KEY DEFAULT true,
  spend_limit_micros bigint,
  period text NOT NULL DEFAULT 'month',
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chat_usage_limit_config_singleton CHECK (singleton),
  CONSTRAINT chat_usage_limit_config_limit_positive CHECK (spend_limit_micros > 0),
  CONSTRAINT chat_usage_limit_config_period CHECK (period IN ('day', 'week', 'month'))
);
INSERT INTO chat_usage_limit_config DEFAULT VALUES;

-- GET /usage-limits lists the overrides.
CREATE INDEX users_chat_spend_limit_idx ON users (lower(username))
  WHERE chat_spend_limit_micros IS NOT NULL;
CREATE INDEX groups_chat_spend_limit_idx ON groups (organization_id, lower(name))
  WHERE chat_spend_limit_micros IS NOT NULL;

-- Changes to the limits are audited; the entry names the user or group in its detail.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_action;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_action CHECK (action IN (
  'context_push', 'context_pin', 'context_hydrate', 'context_dirty', 'context_clean',
  'chat_context_add', 'chat_context_clear', 'chat_archive', 'chat_unarchive',
  'usage_limit_config', 'usage_limit_override', 'usage_limit_group_override'
));
