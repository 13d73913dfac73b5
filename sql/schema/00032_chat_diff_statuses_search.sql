-- Pull-request status at scale (docs/sql.md "Pull-request status"): the `q` pull-request filters,
-- the pull-request insights and per-owner forge tokens.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
--
-- chat_diff_statuses carries copies of its chat's owner, family root and creation time, which
-- never change (chats_100_check_immutable), so a filter or a count reads only this table and an
-- index on it: no join to chats per status. The copies are filled by
-- chat_diff_statuses_100_copy_chat (sql/triggers/chat_diff_statuses.sql) on every insert. It also
-- carries whether the chat is archived (chats_700_copy_archived keeps it), so the refresher's
-- index holds only references it may refresh: an archived chat's reference, stale forever, would
-- otherwise sit at the front of every claim.
--
-- The indexes are built in this transaction, not concurrently: chat_diff_statuses had no writer
-- before the refresher of this version (only agents' git activity, a few rows per workspace),
-- and ADD COLUMN locks the table anyway. No other table is locked.

-- Substring filters (repo:, pr_title:) use trigram indexes. pg_trgm ships with PostgreSQL and is
-- a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE chat_diff_statuses
  ADD COLUMN owner_id uuid,
  ADD COLUMN root_chat_id uuid,
  ADD COLUMN chat_created_at timestamptz,
  ADD COLUMN chat_archived boolean NOT NULL DEFAULT false;

UPDATE chat_diff_statuses d
SET owner_id = c.owner_id, root_chat_id = COALESCE(c.root_chat_id, c.id),
  chat_created_at = c.created_at, chat_archived = c.archived
FROM chats c
WHERE c.id = d.chat_id;

ALTER TABLE chat_diff_statuses
  ALTER COLUMN owner_id SET NOT NULL,
  ALTER COLUMN root_chat_id SET NOT NULL,
  ALTER COLUMN chat_created_at SET NOT NULL;

-- The refresher's claim: the oldest stale references it may refresh (chat_diff_statuses_claim).
-- Replaces 00031's index, which also held archived chats' references.
DROP INDEX chat_diff_statuses_stale_idx;
CREATE INDEX chat_diff_statuses_refresh_idx ON chat_diff_statuses (stale_at)
  WHERE git_branch <> '' AND git_remote_origin <> '' AND NOT chat_archived;

-- pr:<n>
CREATE INDEX chat_diff_statuses_owner_pr_number_idx ON chat_diff_statuses (owner_id, pr_number)
  INCLUDE (root_chat_id) WHERE pr_number IS NOT NULL;
-- The owner's pull requests newest chat first: GET /insights/pull-requests (its counts and its
-- page, index-only for the counts) and pr_status:.
CREATE INDEX chat_diff_statuses_owner_pull_requests_idx
  ON chat_diff_statuses (owner_id, chat_created_at DESC, chat_id DESC)
  INCLUDE (pull_request_state, pull_request_draft, root_chat_id)
  WHERE pull_request_state IS NOT NULL;
-- repo: (remote or URL) and pr_title:, case-insensitive substrings.
CREATE INDEX chat_diff_statuses_remote_trgm_idx ON chat_diff_statuses
  USING gin (lower(git_remote_origin) gin_trgm_ops);
CREATE INDEX chat_diff_statuses_url_trgm_idx ON chat_diff_statuses
  USING gin (lower(url) gin_trgm_ops) WHERE url IS NOT NULL;
CREATE INDEX chat_diff_statuses_title_trgm_idx ON chat_diff_statuses
  USING gin (lower(pull_request_title) gin_trgm_ops);

-- A user's own token for the forge (GitHub), sealed like provider keys (src/lib/secrets.ts, the
-- associated data names the user). The refresher uses it for that user's chats instead of the
-- deployment's PGCHATD_GITHUB_TOKEN.
CREATE TABLE chat_forge_tokens (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  token_ciphertext bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A rate limit belongs to the token that met it: one user's exhausted token must not park every
-- other chat on the forge. NULL is the deployment's token (PGCHATD_GITHUB_TOKEN). No foreign key:
-- a backoff of a deleted user's token expires by itself.
ALTER TABLE chat_forge_backoffs DROP CONSTRAINT chat_forge_backoffs_pkey;
ALTER TABLE chat_forge_backoffs ADD COLUMN token_user_id uuid;
ALTER TABLE chat_forge_backoffs
  ADD CONSTRAINT chat_forge_backoffs_host_token_key UNIQUE NULLS NOT DISTINCT (host, token_user_id);
