-- Triggers on workspace_agent_contexts. Names: workspace_agent_contexts_<nnn>_<purpose>.

-- A snapshot whose content changed: every unarchived chat bound to that agent is compared with it
-- again (chat_context_mark_agent, sql/functions/chat_context.sql), in the writing transaction and
-- in one statement however many chats there are: the `context_dirty` events go out with that
-- transaction's commit, and a rolled-back push marks nothing. The snapshot row is locked by the
-- UPDATE that fired this, so a chat pinning from it meanwhile either committed first (and is
-- compared here) or waits and pins the new content. The count of chats it marked dirty goes to
-- the push through pgchatd.context_marked.
CREATE OR REPLACE FUNCTION workspace_agent_contexts__mark_chats_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('pgchatd.context_marked',
    (COALESCE(NULLIF(current_setting('pgchatd.context_marked', true), ''), '0')::integer
      + chat_context_mark_agent(NEW.agent_id))::text,
    true);
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER workspace_agent_contexts_500_mark_chats_dirty
  AFTER UPDATE ON workspace_agent_contexts
  FOR EACH ROW
  WHEN (NEW.aggregate_hash IS DISTINCT FROM OLD.aggregate_hash)
  EXECUTE FUNCTION workspace_agent_contexts__mark_chats_dirty();
