-- A chat as the API shows it, the one projection every chat-returning query selects whole
-- (`SELECT c.* FROM chat_rows c`): the chat's visible columns, has_unread and its diff status.
-- Re-applied on every migrate (CREATE OR REPLACE VIEW), like the routines: this file is its one
-- home. A new visible field is a migration (the column), a line here (at the end: CREATE OR
-- REPLACE VIEW only appends columns; renaming or dropping one needs a migration that drops the
-- view), its shape in src/api/shapes.ts and docs/api.md.
-- The diff status is a LEFT join on its unique key, so a query that reads none of its columns
-- (the list's filters read only the chat's) has it removed by the planner.
CREATE OR REPLACE VIEW chat_rows AS
SELECT c.id, c.owner_id, c.organization_id, c.workspace_id, c.build_id, c.agent_id,
  c.parent_chat_id, c.root_chat_id, c.last_model_config_id, c.title, c.status, c.last_error,
  c.created_at, c.updated_at, c.archived, c.pin_order, c.mode, c.plan_mode, c.client_type,
  c.mcp_server_ids, c.labels,
  -- An assistant message the owner has not seen: newer than the read cursor and not deleted.
  EXISTS (
    SELECT 1 FROM chat_messages m
    WHERE m.chat_id = c.id AND m.role = 'assistant' AND NOT m.deleted
      AND m.id > COALESCE(c.last_read_message_id, 0)
  ) AS has_unread,
  c.last_turn_summary, c.context_aggregate_hash, c.context_dirty_since,
  c.context_dirty_resources, c.context_error, c.version,
  d.chat_id AS diff_chat_id,
  d.url AS diff_url,
  d.pull_request_state AS diff_pull_request_state,
  d.pull_request_title AS diff_pull_request_title,
  d.pull_request_draft AS diff_pull_request_draft,
  d.pr_number AS diff_pr_number,
  d.changes_requested AS diff_changes_requested,
  d.additions AS diff_additions,
  d.deletions AS diff_deletions,
  d.changed_files AS diff_changed_files,
  d.git_branch AS diff_git_branch,
  d.git_remote_origin AS diff_git_remote_origin,
  d.refreshed_at AS diff_refreshed_at,
  d.stale_at AS diff_stale_at
FROM chats c
LEFT JOIN chat_diff_statuses d ON d.chat_id = c.id;
