-- postgres-migrations disable-transaction
-- q=pr_title: (a case-insensitive substring of the pull request's title).
-- Built concurrently: writes and reads go on while it builds (docs/sql.md "Pull-request status").
CREATE INDEX CONCURRENTLY chat_diff_statuses_title_trgm_idx ON chat_diff_statuses
  USING gin (lower(pull_request_title) gin_trgm_ops);
