-- postgres-migrations disable-transaction
-- q=repo: (a case-insensitive substring of the remote, or of the URL: 00038).
-- Built concurrently: writes and reads go on while it builds (docs/sql.md "Pull-request status").
CREATE INDEX CONCURRENTLY chat_diff_statuses_remote_trgm_idx ON chat_diff_statuses
  USING gin (lower(git_remote_origin) gin_trgm_ops);
