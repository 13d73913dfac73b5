-- Changes to the housekeeping settings are audited, and so is each root the housekeeping job
-- archives (sql/functions/chat_housekeeping.sql). Alone in its migration: it locks audit_logs
-- exclusively.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_action;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_action CHECK (action IN (
  'context_push', 'context_pin', 'context_hydrate', 'context_dirty', 'context_clean',
  'chat_context_add', 'chat_context_clear', 'chat_archive', 'chat_unarchive',
  'usage_limit_config', 'usage_limit_override', 'usage_limit_group_override',
  'retention_config', 'auto_archive_config', 'chat_auto_archive'
));
