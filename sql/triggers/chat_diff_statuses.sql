-- Triggers on chat_diff_statuses. Names: chat_diff_statuses_<nnn>_<purpose>.

-- The chat's owner, family root and creation time, copied once: they never change
-- (chats_100_check_immutable), and the pull-request filters and insights read them from here
-- (migration 00032). Whether it is archived is copied here too, and kept by
-- chats_700_copy_archived (sql/triggers/chats.sql).
CREATE OR REPLACE FUNCTION chat_diff_statuses__copy_chat() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  SELECT c.owner_id, COALESCE(c.root_chat_id, c.id), c.created_at, c.archived
  INTO NEW.owner_id, NEW.root_chat_id, NEW.chat_created_at, NEW.chat_archived
  FROM chats c WHERE c.id = NEW.chat_id;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chat_diff_statuses_100_copy_chat
  BEFORE INSERT ON chat_diff_statuses
  FOR EACH ROW EXECUTE FUNCTION chat_diff_statuses__copy_chat();

CREATE OR REPLACE FUNCTION chat_diff_statuses__check_copies() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.chat_id <> OLD.chat_id OR NEW.owner_id <> OLD.owner_id
     OR NEW.root_chat_id <> OLD.root_chat_id OR NEW.chat_created_at <> OLD.chat_created_at THEN
    RAISE EXCEPTION 'A diff status''s chat and the copies of its chat cannot change.'
      USING ERRCODE = 'PC400';
  END IF;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chat_diff_statuses_110_check_copies
  BEFORE UPDATE OF chat_id, owner_id, root_chat_id, chat_created_at ON chat_diff_statuses
  FOR EACH ROW EXECUTE FUNCTION chat_diff_statuses__check_copies();

-- Change events for the owner's watch stream: one `diff_status_change` per chat whose diff status
-- changed, and one for its root, whose embedded children show it (a subagent's pull request
-- shows on its parent). Chats being deleted find no row and emit nothing (their hard_deleted
-- covers it).
CREATE OR REPLACE FUNCTION chat_diff_statuses__emit(p_chat_ids uuid[], p_root_ids uuid[])
RETURNS void
LANGUAGE sql AS $$
  SELECT chat_events_append(ARRAY(
    SELECT ROW(c.id, c.owner_id, 'diff_status_change', c.version, NULL)::chat_event_row
    FROM chats c
    WHERE c.id = ANY (p_chat_ids || p_root_ids)
    ORDER BY c.id));
$$;

CREATE OR REPLACE FUNCTION chat_diff_statuses__events_on_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM chat_diff_statuses__emit(
      ARRAY(SELECT chat_id FROM old_rows), ARRAY(SELECT root_chat_id FROM old_rows));
  ELSE
    PERFORM chat_diff_statuses__emit(
      ARRAY(SELECT chat_id FROM new_rows), ARRAY(SELECT root_chat_id FROM new_rows));
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_insert
  AFTER INSERT ON chat_diff_statuses REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_diff_statuses__events_on_write();

-- An update is an event only when the pull request or the reference changed: the refresher's
-- claims and backoffs move stale_at and last_error, and every refresh refreshed_at, every few
-- minutes for every active reference; an event for each would tell watchers nothing new.
CREATE OR REPLACE FUNCTION chat_diff_statuses__events_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_changed chat_diff_statuses[];
BEGIN
  v_changed := ARRAY(
    SELECT n
    FROM new_rows n
    JOIN old_rows o ON o.chat_id = n.chat_id
    WHERE (n.url, n.pull_request_state, n.pull_request_title, n.pull_request_draft, n.pr_number,
        n.changes_requested, n.additions, n.deletions, n.changed_files, n.git_branch,
        n.git_remote_origin)
      IS DISTINCT FROM
      (o.url, o.pull_request_state, o.pull_request_title, o.pull_request_draft, o.pr_number,
        o.changes_requested, o.additions, o.deletions, o.changed_files, o.git_branch,
        o.git_remote_origin));
  IF cardinality(v_changed) > 0 THEN
    PERFORM chat_diff_statuses__emit(
      ARRAY(SELECT (r).chat_id FROM unnest(v_changed) r),
      ARRAY(SELECT (r).root_chat_id FROM unnest(v_changed) r));
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_update
  AFTER UPDATE ON chat_diff_statuses REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_diff_statuses__events_on_update();

CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_delete
  AFTER DELETE ON chat_diff_statuses REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_diff_statuses__events_on_write();
