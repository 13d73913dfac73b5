-- postgres-migrations disable-transaction
-- Cost windows that do not start or end at a UTC midnight read the messages of their partial
-- first and last days (chat_cost_rows, sql/functions/chat_costs.sql); whole days come from
-- chat_cost_daily. Built concurrently: writes go on while it builds.
CREATE INDEX CONCURRENTLY chat_messages_assistant_created_at_idx ON chat_messages (created_at)
  WHERE role = 'assistant';
