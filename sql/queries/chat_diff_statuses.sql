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
-- chat_diff_statuses_claim: see sql/functions/chat_diff_statuses.sql. With the owner's own forge
-- token, if any (sealed; src/forge/refresh.ts opens it).
SELECT c.chat_id, c.owner_id, c.git_branch, c.git_remote_origin, c.forge_host, c.updated_at,
  t.token_ciphertext
FROM chat_diff_statuses_claim(@batch_size) AS c
LEFT JOIN chat_forge_tokens t ON t.user_id = c.owner_id;

-- name: ClaimStaleChatDiffStatusByChatID :many
-- chat_diff_status_claim_chat: GET /{chat} resolving a stale reference inline. Zero or one row.
SELECT c.chat_id, c.owner_id, c.git_branch, c.git_remote_origin, c.forge_host, c.updated_at,
  t.token_ciphertext
FROM chat_diff_status_claim_chat(@chat_id) AS c
LEFT JOIN chat_forge_tokens t ON t.user_id = c.owner_id;

-- name: RecordChatDiffStatusRefresh :one
-- chat_diff_status_record_refresh: see sql/functions/chat_diff_statuses.sql.
SELECT chat_diff_status_record_refresh(
  @chat_id, @git_branch, @git_remote_origin, @updated_at, @outcome, sqlc.narg(pr),
  sqlc.narg(error), sqlc.narg(until), sqlc.narg(token_user_id)
) AS applied;

-- name: GetChatPullRequestCountsByOwner :one
-- GET /insights/pull-requests (the caller's) and, with owner_id NULL, the deployment's counts for
-- the telemetry snapshot: one index-only scan of chat_diff_statuses_owner_pull_requests_idx
-- either way (the server plans each execution with its parameter values). A draft is an open
-- pull request marked draft; `open` counts the others, as `pr_status:` does.
SELECT count(*) AS total,
  count(*) FILTER (WHERE pull_request_state = 'open' AND NOT pull_request_draft) AS open,
  count(*) FILTER (WHERE pull_request_state = 'merged') AS merged,
  count(*) FILTER (WHERE pull_request_state = 'closed') AS closed,
  count(*) FILTER (WHERE pull_request_state = 'open' AND pull_request_draft) AS draft
FROM chat_diff_statuses
WHERE pull_request_state IS NOT NULL
  AND (sqlc.narg(owner_id)::uuid IS NULL OR owner_id = sqlc.narg(owner_id)::uuid);

-- name: ListChatPullRequestsByOwner :many
-- GET /insights/pull-requests: the owner's chats with a pull request, newest chat first, one
-- page, walking chat_diff_statuses_owner_pull_requests_idx in order (no sort).
SELECT d.chat_id, d.url, d.pull_request_state, d.pull_request_title, d.pull_request_draft,
  d.pr_number, d.changes_requested, d.additions, d.deletions, d.changed_files, d.git_branch,
  d.git_remote_origin, d.refreshed_at, d.stale_at
FROM chat_diff_statuses d
WHERE d.owner_id = @owner_id AND d.pull_request_state IS NOT NULL
ORDER BY d.chat_created_at DESC, d.chat_id DESC
LIMIT @page_limit OFFSET @page_offset;

-- name: GetChatForgeTokenByUserID :one
SELECT EXISTS (SELECT 1 FROM chat_forge_tokens WHERE user_id = @user_id) AS has_token;

-- name: UpsertChatForgeTokenByUserID :exec
-- The caller's own forge token, sealed by the server (src/lib/secrets.ts) before it gets here.
-- A rate limit the old token met is not the new one's: it goes.
WITH lifted AS (
  DELETE FROM chat_forge_backoffs WHERE token_user_id = @user_id
)
INSERT INTO chat_forge_tokens (user_id, token_ciphertext)
VALUES (@user_id, @token_ciphertext)
ON CONFLICT (user_id) DO UPDATE SET
  token_ciphertext = excluded.token_ciphertext, updated_at = now();

-- name: DeleteChatForgeTokenByUserID :execrows
-- The user's chats go back to the deployment's token, and its rate limit, if any.
WITH lifted AS (
  DELETE FROM chat_forge_backoffs WHERE token_user_id = @user_id
)
DELETE FROM chat_forge_tokens WHERE user_id = @user_id;
