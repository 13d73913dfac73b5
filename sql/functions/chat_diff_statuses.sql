-- Pull-request status (docs/api.md "Pull-request status"): what agents report of their git
-- activity. The refresher that resolves the pull request comes with its own rules here.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.

-- POST /workspaceagents/me/git-activity: the agent pushed (or switched) `p_branch` of
-- `p_remote_origin` in the chat's workspace. The chat is resolved like a chat-context request
-- (chat_lock_for_agent: the named chat bound to the agent, else its one active root chat;
-- archived chats are read-only). Its reference is stored and marked stale now (stale_at just
-- past, so the refresher takes it next; updated_at now: the last external change). A new branch
-- or remote is another pull request: the old one's fields go. A URL the agent knows (e.g. from
-- the tool that opened the pull request) is kept until a refresh replaces it.
CREATE OR REPLACE FUNCTION chat_diff_status_report_activity(
  p_agent_id uuid, p_chat_id uuid, p_branch text, p_remote_origin text, p_url text
) RETURNS chat_diff_statuses
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_row chat_diff_statuses;
BEGIN
  v_chat := chat_lock_for_agent(p_agent_id, p_chat_id);
  INSERT INTO chat_diff_statuses AS d (
    chat_id, git_branch, git_remote_origin, url, stale_at, updated_at
  ) VALUES (
    v_chat.id, p_branch, p_remote_origin, p_url, chat_clock_now() - interval '1 second',
    chat_clock_now()
  )
  ON CONFLICT (chat_id) DO UPDATE SET
    git_branch = excluded.git_branch,
    git_remote_origin = excluded.git_remote_origin,
    stale_at = excluded.stale_at,
    updated_at = excluded.updated_at,
    url = CASE
      WHEN excluded.url IS NOT NULL THEN excluded.url
      WHEN (d.git_branch, d.git_remote_origin) = (excluded.git_branch, excluded.git_remote_origin)
        THEN d.url
    END,
    pull_request_state = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.pull_request_state END,
    pull_request_title = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.pull_request_title ELSE '' END,
    pull_request_draft = (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) AND d.pull_request_draft,
    pr_number = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.pr_number END,
    changes_requested = (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) AND d.changes_requested,
    additions = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.additions ELSE 0 END,
    deletions = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.deletions ELSE 0 END,
    changed_files = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.changed_files ELSE 0 END,
    refreshed_at = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.refreshed_at END
  RETURNING * INTO v_row;
  RETURN v_row;
END;
$$;
