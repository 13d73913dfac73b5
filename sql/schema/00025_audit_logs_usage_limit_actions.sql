-- Changes to the spend limits are audited (sql/functions/chat_usage_limits.sql); the entry names
-- the user or group in its detail. Alone in its migration: it locks audit_logs exclusively.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_action;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_action CHECK (action IN (
  'context_push', 'context_pin', 'context_hydrate', 'context_dirty', 'context_clean',
  'chat_context_add', 'chat_context_clear', 'chat_archive', 'chat_unarchive',
  'usage_limit_config', 'usage_limit_override', 'usage_limit_group_override'
));
