-- Attribution: the API key a user acted with is kept on the audit entries of the actions it
-- initiates (chat creation, messages sent or queued, tool results, archive and unarchive), so an
-- owner can see what a key did even after the chat or message is gone. No foreign key, like the
-- other columns: entries outlive the keys they name. The new action values are NOT VALID here and
-- validated by the next migration, so this one holds audit_logs' exclusive lock only for a moment.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE audit_logs ADD COLUMN api_key_id text;
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_action;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_action CHECK (action IN (
  'context_push', 'context_pin', 'context_hydrate', 'context_dirty', 'context_clean',
  'chat_context_add', 'chat_context_clear', 'chat_archive', 'chat_unarchive',
  'usage_limit_config', 'usage_limit_override', 'usage_limit_group_override',
  'retention_config', 'auto_archive_config', 'chat_auto_archive',
  'chat_create', 'message_send', 'message_queue', 'tool_results'
)) NOT VALID;
