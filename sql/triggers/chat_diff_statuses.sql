-- Triggers on chat_diff_statuses. Names: chat_diff_statuses_<nnn>_<purpose>.

-- Change events for the owner's watch stream: one `diff_status_change` per chat whose diff status
-- a statement wrote; see chat_events__emit_per_chat in sql/functions/chat_events.sql.
CREATE OR REPLACE TRIGGER chat_diff_statuses_900_events_on_insert
  AFTER INSERT ON chat_diff_statuses REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_events__emit_per_chat('diff_status_change');

-- An update is an event only when something a client shows changed: the refresher's claims and
-- backoffs move stale_at (and last_error) every few minutes for every active reference, and
-- those are not changes of the pull request's status.
CREATE OR REPLACE FUNCTION chat_diff_statuses__events_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_events_append(ARRAY(
    SELECT ROW(c.id, c.owner_id, 'diff_status_change', c.version, NULL)::chat_event_row
    FROM chats c
    WHERE c.id IN (
      SELECT n.chat_id
      FROM new_rows n
      JOIN old_rows o ON o.chat_id = n.chat_id
      WHERE (n.url, n.pull_request_state, n.pull_request_title, n.pull_request_draft, n.pr_number,
          n.changes_requested, n.additions, n.deletions, n.changed_files, n.git_branch,
          n.git_remote_origin, n.refreshed_at)
        IS DISTINCT FROM
        (o.url, o.pull_request_state, o.pull_request_title, o.pull_request_draft, o.pr_number,
          o.changes_requested, o.additions, o.deletions, o.changed_files, o.git_branch,
          o.git_remote_origin, o.refreshed_at))
    ORDER BY c.id));
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
  EXECUTE FUNCTION chat_events__emit_per_chat('diff_status_change');
