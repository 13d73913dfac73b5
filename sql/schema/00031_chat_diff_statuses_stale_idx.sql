-- postgres-migrations disable-transaction
-- The refresher's claim: the oldest stale references that have a branch and a remote
-- (chat_diff_statuses_claim, sql/functions/chat_diff_statuses.sql). Built concurrently: writes go
-- on while it builds.
CREATE INDEX CONCURRENTLY chat_diff_statuses_stale_idx ON chat_diff_statuses (stale_at)
  WHERE git_branch <> '' AND git_remote_origin <> '';
