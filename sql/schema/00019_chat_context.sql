-- The context push marks the bound chats itself (workspace_agent_context_push, in
-- sql/functions/chat_context.sql) and returns its own count: the trigger that marked them and
-- reported back through a session setting goes.
DROP TRIGGER IF EXISTS workspace_agent_contexts_500_mark_chats_dirty ON workspace_agent_contexts;
DROP FUNCTION IF EXISTS workspace_agent_contexts__mark_chats_dirty();
