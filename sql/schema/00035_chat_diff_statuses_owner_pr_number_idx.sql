-- postgres-migrations disable-transaction
-- q=pr:<n> (ListChatsByOwner, sql/queries/chats.sql).
-- Built concurrently: writes and reads go on while it builds (docs/sql.md "Pull-request status").
CREATE INDEX CONCURRENTLY chat_diff_statuses_owner_pr_number_idx
  ON chat_diff_statuses (owner_id, pr_number) INCLUDE (root_chat_id) WHERE pr_number IS NOT NULL;
