-- postgres-migrations disable-transaction
-- Cost windows that do not start or end at a UTC midnight (a UI's local midnight, "the last 24
-- hours") read the messages of their partial first and last days (chat_cost_rows,
-- sql/functions/chat_costs.sql); whole days come from chat_cost_daily. Covering, so those reads
-- are index-only scans: at most about a day of assistant messages whatever the window's length.
-- Built concurrently: writes go on while it builds.
CREATE INDEX CONCURRENTLY chat_messages_assistant_created_at_idx ON chat_messages (created_at)
  INCLUDE (chat_id, model_config_id, total_cost_micros, input_tokens, output_tokens,
    cache_read_tokens, cache_creation_tokens, runtime_ms)
  WHERE role = 'assistant';
