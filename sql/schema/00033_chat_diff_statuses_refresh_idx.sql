-- postgres-migrations disable-transaction
-- The refresher's claim: the oldest stale references it may refresh (chat_diff_statuses_claim,
-- sql/functions/chat_diff_statuses.sql). Replaces 00031's index (dropped by 00034), which also
-- held archived chats' references.
-- Built concurrently: writes and reads go on while it builds (docs/sql.md "Pull-request status").
CREATE INDEX CONCURRENTLY chat_diff_statuses_refresh_idx ON chat_diff_statuses (stale_at)
  WHERE git_branch <> '' AND git_remote_origin <> '' AND NOT chat_archived;
