-- Pull-request status at scale (docs/sql.md "Pull-request status"): the copies the `q`
-- pull-request filters, the insights and the refresher's claim read, and per-user forge tokens.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
--
-- chat_diff_statuses carries copies of its chat's owner, family root and creation time, which
-- never change (chats_100_check_immutable), so a filter or a count reads only this table and an
-- index on it: no join to chats per status. It also carries whether the chat is archived
-- (chats_700_copy_archived keeps it, sql/triggers/chats.sql), so the refresher's index holds only
-- references it may refresh: an archived chat's reference, stale forever, would otherwise sit at
-- the front of every claim. The indexes come in 00033 to 00039, each built concurrently.
--
-- Locks: ACCESS EXCLUSIVE on chat_diff_statuses for the backfill, which rewrites every row once
-- (before this version only agents' git activity wrote the table: a few rows per workspace; chat
-- reads, which join it, wait that long). chat_forge_tokens' foreign key takes SHARE ROW EXCLUSIVE
-- on users for an instant. Nothing is locked on chats: an archive by a server of the previous
-- version during this migration is caught up when the routines are applied (the repair at the end
-- of sql/triggers/chats.sql).

-- Substring filters (repo:, pr_title:) use trigram indexes. pg_trgm ships with PostgreSQL and is
-- a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE chat_diff_statuses
  ADD COLUMN owner_id uuid,
  ADD COLUMN root_chat_id uuid,
  ADD COLUMN chat_created_at timestamptz,
  ADD COLUMN chat_archived boolean NOT NULL DEFAULT false;

-- Fills the copies of a status inserted by a server of the previous version until the routines
-- replace this body with the current one (sql/triggers/chat_diff_statuses.sql, same name).
CREATE FUNCTION chat_diff_statuses__copy_chat() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  SELECT c.owner_id, COALESCE(c.root_chat_id, c.id), c.created_at, c.archived
  INTO NEW.owner_id, NEW.root_chat_id, NEW.chat_created_at, NEW.chat_archived
  FROM chats c WHERE c.id = NEW.chat_id;
  RETURN NEW;
END;
$$;
CREATE TRIGGER chat_diff_statuses_100_copy_chat
  BEFORE INSERT ON chat_diff_statuses
  FOR EACH ROW EXECUTE FUNCTION chat_diff_statuses__copy_chat();

UPDATE chat_diff_statuses d
SET owner_id = c.owner_id, root_chat_id = COALESCE(c.root_chat_id, c.id),
  chat_created_at = c.created_at, chat_archived = c.archived
FROM chats c
WHERE c.id = d.chat_id;

ALTER TABLE chat_diff_statuses
  ALTER COLUMN owner_id SET NOT NULL,
  ALTER COLUMN root_chat_id SET NOT NULL,
  ALTER COLUMN chat_created_at SET NOT NULL;

-- A user's own token for the forge (GitHub), sealed like provider keys (src/lib/secrets.ts, the
-- associated data names the user). The refresher uses it for that user's chats instead of the
-- deployment's PGCHATD_GITHUB_TOKEN.
CREATE TABLE chat_forge_tokens (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  token_ciphertext bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A rate limit belongs to the token that met it: one user's exhausted token must not park every
-- other chat on the forge. NULL is the deployment's token (PGCHATD_GITHUB_TOKEN); rows from
-- before stay the deployment's. No foreign key: a deleted user's backoff expires by itself.
ALTER TABLE chat_forge_backoffs DROP CONSTRAINT chat_forge_backoffs_pkey;
ALTER TABLE chat_forge_backoffs ADD COLUMN token_user_id uuid;
ALTER TABLE chat_forge_backoffs
  ADD CONSTRAINT chat_forge_backoffs_host_token_key UNIQUE NULLS NOT DISTINCT (host, token_user_id);
