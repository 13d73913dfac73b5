-- Cost analytics and spend limits (docs/sql.md "Cost and spend limits"): the daily cost rollup
-- and the deployment's limit. The rollup is filled by 00027; 00025 and 00026 hold the rest, each
-- alone, so that no migration holds locks on two busy tables at once (a server of the previous
-- version may run meanwhile, and would deadlock with it).
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- What assistant messages cost, summed per chat, UTC day and model. Every rollup reads this
-- instead of chat_messages: a 30-day page of every user's cost reads one row per chat, day and
-- model instead of every message.
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
-- One owner's days: a user's cost summary.
CREATE INDEX chat_cost_daily_owner_idx ON chat_cost_daily (owner_id, day);
-- Every owner's days: the per-user cost page.
CREATE INDEX chat_cost_daily_day_idx ON chat_cost_daily (day);

-- The spend check's own rollup: priced cost per owner, organization and UTC day, so a month is at
-- most 31 rows of one index (its primary key covers the cost). Kept by the same trigger, which
-- holds the owner's spend lock while it writes, so this hot row costs no extra waiting. No foreign
-- keys: the spend of a chat deleted later still happened (and a deleted user's rows are few).
CREATE TABLE chat_spend_daily (
  owner_id uuid NOT NULL,
  organization_id uuid NOT NULL,
  day date NOT NULL,
  total_cost_micros bigint NOT NULL,
  PRIMARY KEY (owner_id, organization_id, day) INCLUDE (total_cost_micros)
);

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
