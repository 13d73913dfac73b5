-- name: UpsertChatDiffStatus :exec
INSERT INTO chat_diff_statuses (
  chat_id, url, pull_request_state, pull_request_title, pull_request_draft, pr_number,
  changes_requested, additions, deletions, changed_files, git_branch, git_remote_origin,
  refreshed_at
) VALUES (
  @chat_id, sqlc.narg(url), sqlc.narg(pull_request_state), @pull_request_title,
  @pull_request_draft, sqlc.narg(pr_number)::integer, @changes_requested, @additions, @deletions,
  @changed_files, @git_branch, @git_remote_origin, now()
)
ON CONFLICT (chat_id) DO UPDATE SET
  url = EXCLUDED.url,
  pull_request_state = EXCLUDED.pull_request_state,
  pull_request_title = EXCLUDED.pull_request_title,
  pull_request_draft = EXCLUDED.pull_request_draft,
  pr_number = EXCLUDED.pr_number,
  changes_requested = EXCLUDED.changes_requested,
  additions = EXCLUDED.additions,
  deletions = EXCLUDED.deletions,
  changed_files = EXCLUDED.changed_files,
  git_branch = EXCLUDED.git_branch,
  git_remote_origin = EXCLUDED.git_remote_origin,
  refreshed_at = EXCLUDED.refreshed_at;

-- name: ReportChatGitActivity :one
-- chat_diff_status_report_activity: see sql/functions/chat_diff_statuses.sql.
SELECT r.chat_id, r.url, r.pull_request_state, r.pull_request_title, r.pull_request_draft,
  r.pr_number, r.changes_requested, r.additions, r.deletions, r.changed_files, r.git_branch,
  r.git_remote_origin, r.refreshed_at, r.stale_at
FROM chat_diff_status_report_activity(
  @agent_id, sqlc.narg(chat_id), @branch, @remote_origin, sqlc.narg(url)
) AS r;

-- name: ClaimStaleChatDiffStatuses :many
-- chat_diff_statuses_claim: see sql/functions/chat_diff_statuses.sql.
SELECT c.chat_id, c.git_branch, c.git_remote_origin, c.forge_host, c.updated_at
FROM chat_diff_statuses_claim(@batch_size) AS c;

-- name: RecordChatDiffStatusRefresh :one
-- chat_diff_status_record_refresh: see sql/functions/chat_diff_statuses.sql.
SELECT chat_diff_status_record_refresh(
  @chat_id, @git_branch, @git_remote_origin, @updated_at, @outcome, sqlc.narg(pr),
  sqlc.narg(error), sqlc.narg(until)
) AS applied;
