-- Triggers on workspace_agent_contexts. Names: workspace_agent_contexts_<nnn>_<purpose>.

-- A snapshot whose content changed: every chat bound to that agent that is not archived and has
-- pinned context is compared with it again, whatever it was before. Pinned other content: dirty,
-- with the sources that differ now (context_dirty_since stays from the first marking); pinned
-- exactly this content (a push restored it): clean again. Only chats whose marking changes are
-- written, with one audit entry each (context_dirty or context_clean). In the writing
-- transaction, in one statement however many chats there are: the `context_dirty` events go out
-- with that transaction's commit, and a rolled-back push marks nothing. The snapshot row is locked
-- by the UPDATE that fired this, so a chat pinning from it meanwhile either committed first (and
-- is compared here) or waits and pins the new content. The count of chats left dirty by this
-- push goes to the push through pgchatd.context_marked.
CREATE OR REPLACE FUNCTION workspace_agent_contexts__mark_chats_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_count integer;
BEGIN
  -- Level 4 of the lock order (sql/functions/chats.sql): the agent's chats, in id order, before
  -- any of them is changed. An archive locks its family in the same order.
  PERFORM chat_lock_rows(ARRAY(SELECT id FROM chats WHERE agent_id = NEW.agent_id AND NOT archived));
  WITH compared AS (
    SELECT c.id, CASE WHEN c.context_aggregate_hash <> NEW.aggregate_hash
      THEN chat_context_changes(c.id, NEW.agent_id) END AS changes
    FROM chats c
    WHERE c.agent_id = NEW.agent_id AND NOT c.archived AND c.context_aggregate_hash IS NOT NULL
  ), marked AS (
    UPDATE chats c
    SET context_dirty_since = CASE WHEN m.changes IS NOT NULL THEN COALESCE(c.context_dirty_since, now()) END,
      context_dirty_resources = m.changes
    FROM compared m
    WHERE c.id = m.id AND c.context_dirty_resources IS DISTINCT FROM m.changes
    RETURNING c.id, m.changes IS NOT NULL AS dirty
  ), logged AS (
    INSERT INTO audit_logs (actor_agent_id, action, chat_id, agent_id, detail)
    SELECT NEW.agent_id, CASE WHEN m.dirty THEN 'context_dirty' ELSE 'context_clean' END, m.id,
      NEW.agent_id, jsonb_build_object('aggregate_hash', NEW.aggregate_hash, 'version', NEW.version)
    FROM marked m
    RETURNING action
  )
  SELECT count(*) FILTER (WHERE action = 'context_dirty') INTO v_count FROM logged;
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
