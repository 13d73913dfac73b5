-- Triggers on workspace_agent_contexts. Names: workspace_agent_contexts_<nnn>_<purpose>.

-- A snapshot whose content changed marks dirty every chat bound to that agent that is not
-- archived, has a pinned hash, pinned other content and is not dirty already, recording which
-- sources changed; one audit entry per chat. In the writing transaction, in one statement however
-- many chats there are: the `context_dirty` events go out with that transaction's commit, and a
-- rolled-back push marks nothing. The snapshot row is locked by the UPDATE that fired this, so a
-- chat pinning from it meanwhile either committed first (and is marked here) or waits and pins
-- the new content. The count goes to the push through pgchatd.context_marked.
CREATE OR REPLACE FUNCTION workspace_agent_contexts__mark_chats_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_count integer;
BEGIN
  WITH marked AS (
    UPDATE chats c
    SET context_dirty_since = now(), context_dirty_resources = chat_context_changes(c.id, NEW.agent_id)
    WHERE c.agent_id = NEW.agent_id AND NOT c.archived
      AND c.context_aggregate_hash IS NOT NULL
      AND c.context_aggregate_hash <> NEW.aggregate_hash
      AND c.context_dirty_since IS NULL
    RETURNING c.id
  )
  INSERT INTO audit_logs (actor_agent_id, action, chat_id, agent_id, detail)
  SELECT NEW.agent_id, 'context_dirty', m.id, NEW.agent_id,
    jsonb_build_object('aggregate_hash', NEW.aggregate_hash, 'version', NEW.version)
  FROM marked m;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  PERFORM set_config('pgchatd.context_marked',
    (COALESCE(NULLIF(current_setting('pgchatd.context_marked', true), ''), '0')::integer + v_count)::text,
    true);
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER workspace_agent_contexts_500_mark_chats_dirty
  AFTER UPDATE ON workspace_agent_contexts
  FOR EACH ROW
  WHEN (NEW.aggregate_hash IS DISTINCT FROM OLD.aggregate_hash)
  EXECUTE FUNCTION workspace_agent_contexts__mark_chats_dirty();
