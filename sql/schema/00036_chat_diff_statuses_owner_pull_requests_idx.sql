-- postgres-migrations disable-transaction
-- The owner's pull requests newest chat first: GET /insights/pull-requests (its counts, index
-- only, and its page) and q=pr_status:.
-- Built concurrently: writes and reads go on while it builds (docs/sql.md "Pull-request status").
CREATE INDEX CONCURRENTLY chat_diff_statuses_owner_pull_requests_idx
  ON chat_diff_statuses (owner_id, chat_created_at DESC, chat_id DESC)
  INCLUDE (pull_request_state, pull_request_draft, root_chat_id)
  WHERE pull_request_state IS NOT NULL;
