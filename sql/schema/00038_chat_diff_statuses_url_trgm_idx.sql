-- postgres-migrations disable-transaction
-- q=repo: (a case-insensitive substring of the URL, or of the remote: 00037).
-- Built concurrently: writes and reads go on while it builds (docs/sql.md "Pull-request status").
CREATE INDEX CONCURRENTLY chat_diff_statuses_url_trgm_idx ON chat_diff_statuses
  USING gin (lower(url) gin_trgm_ops) WHERE url IS NOT NULL;
