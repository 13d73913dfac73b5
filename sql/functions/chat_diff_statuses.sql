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
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.refreshed_at END,
    last_error = CASE WHEN (d.git_branch, d.git_remote_origin)
      = (excluded.git_branch, excluded.git_remote_origin) THEN d.last_error END
  RETURNING * INTO v_row;
  RETURN v_row;
END;
$$;

-- Whether the forge `p_host` asked the token a chat of `p_owner_id` is refreshed with to wait:
-- the owner's own token when they have one (chat_forge_tokens), else the deployment's (NULL).
-- Inlined into the claims.
CREATE OR REPLACE FUNCTION chat_forge_parked(p_host text, p_owner_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT EXISTS (
    SELECT 1 FROM chat_forge_backoffs b
    WHERE b.host = p_host AND b.until > chat_clock_now()
      AND b.token_user_id IS NOT DISTINCT FROM (
        SELECT t.user_id FROM chat_forge_tokens t WHERE t.user_id = p_owner_id));
$$;

-- The refresher (docs/sql.md "Pull-request status"). Every runner process runs one; they share the
-- work through the claim, which takes rows nobody else holds (SKIP LOCKED) and pushes their
-- stale_at 5 minutes ahead in the same statement: a refresher that dies holding rows leaves them
-- to another one 5 minutes later, never forever. Claims and backoffs never move updated_at (the
-- last change from outside). Archived chats (chat_archived, kept by chats_700_copy_archived), rows
-- without a branch or a remote, and rows of a forge that is rate limited are never claimed; the
-- first three are outside chat_diff_statuses_refresh_idx, which yields the rest oldest first, so
-- a claim reads about as many rows as it takes (plus a parked forge's, until its reset).
CREATE OR REPLACE FUNCTION chat_diff_statuses_claim(p_limit integer)
RETURNS SETOF chat_diff_statuses
LANGUAGE sql AS $$
  UPDATE chat_diff_statuses d
  SET stale_at = chat_clock_now() + interval '5 minutes'
  FROM (
    SELECT s.chat_id
    FROM chat_diff_statuses s
    WHERE s.stale_at <= chat_clock_now() AND s.git_branch <> '' AND s.git_remote_origin <> ''
      AND NOT s.chat_archived
      AND NOT chat_forge_parked(s.forge_host, s.owner_id)
    ORDER BY s.stale_at
    LIMIT p_limit
    FOR NO KEY UPDATE OF s SKIP LOCKED
  ) picked
  WHERE d.chat_id = picked.chat_id
  RETURNING d.*;
$$;

-- GET /{chat} of a chat whose reference is stale: the same claim for that one chat, so the request
-- resolves it inline (bounded, src/forge/refresh.ts) unless a refresher holds it already. Nothing
-- when it is not stale, not refreshable, or held.
CREATE OR REPLACE FUNCTION chat_diff_status_claim_chat(p_chat_id uuid)
RETURNS SETOF chat_diff_statuses
LANGUAGE sql AS $$
  UPDATE chat_diff_statuses d
  SET stale_at = chat_clock_now() + interval '5 minutes'
  FROM (
    SELECT s.chat_id
    FROM chat_diff_statuses s
    WHERE s.chat_id = p_chat_id
      AND s.stale_at <= chat_clock_now() AND s.git_branch <> '' AND s.git_remote_origin <> ''
      AND NOT s.chat_archived
      AND NOT chat_forge_parked(s.forge_host, s.owner_id)
    FOR NO KEY UPDATE OF s SKIP LOCKED
  ) picked
  WHERE d.chat_id = picked.chat_id
  RETURNING d.*;
$$;

-- The outcome of one claimed row's refresh. It applies only while the row still holds the
-- reference that was claimed (p_branch, p_remote_origin, p_updated_at) and its chat is not
-- archived: an agent that reported new activity meanwhile made the row stale again, and this
-- answer is about the old reference; an archived chat shows what it showed when archived.
--   'found'         the branch's pull request (p_pr: {url, state, title, draft, number,
--                   additions, deletions, changed_files, changes_requested}): stored, refreshed
--                   now, updated_at now (a change from outside), next refresh in 120 s; a merged
--                   pull request is final (GitHub cannot reopen it), so in a day, unless the
--                   agent reports new activity first;
--   'no_pr'         none yet: within 2 minutes of the last activity (a push, then the pull
--                   request is opened) retry in 15 s, else leave the claim's 5-minute lock;
--   'error'         the forge failed (p_error): retry in 120 s, the error kept;
--   'rate_limited'  the forge asked the token (p_token_user_id: the owner whose own token was
--                   used, NULL for the deployment's) to wait until p_until: this row and every
--                   row refreshed with that token on that forge wait until then
--                   (chat_forge_backoffs). A row without a forge host records it as an error.
-- Returns whether it applied.
DROP FUNCTION IF EXISTS chat_diff_status_record_refresh(
  uuid, text, text, timestamptz, text, jsonb, text, timestamptz);
CREATE OR REPLACE FUNCTION chat_diff_status_record_refresh(
  p_chat_id uuid, p_branch text, p_remote_origin text, p_updated_at timestamptz,
  p_outcome text, p_pr jsonb, p_error text, p_until timestamptz, p_token_user_id uuid
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_row chat_diff_statuses;
BEGIN
  IF p_outcome IS NULL OR p_outcome NOT IN ('found', 'no_pr', 'error', 'rate_limited') THEN
    RAISE EXCEPTION 'Unknown refresh outcome %.', p_outcome USING ERRCODE = '22023';
  END IF;
  IF p_chat_id IS NULL OR p_branch IS NULL OR p_remote_origin IS NULL OR p_updated_at IS NULL
     OR (p_outcome = 'found' AND (p_pr IS NULL OR p_pr ->> 'state' IS NULL))
     OR (p_outcome = 'rate_limited' AND p_until IS NULL) THEN
    RAISE EXCEPTION 'A % refresh needs the claimed reference and its outcome''s fields.',
      p_outcome USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_row FROM chat_diff_statuses WHERE chat_id = p_chat_id FOR NO KEY UPDATE;
  IF NOT FOUND OR v_row.chat_archived OR v_row.git_branch <> p_branch
     OR v_row.git_remote_origin <> p_remote_origin OR v_row.updated_at <> p_updated_at THEN
    RETURN false;
  END IF;
  IF p_outcome = 'rate_limited' AND v_row.forge_host IS NULL THEN
    p_outcome := 'error';
  END IF;
  IF p_outcome = 'found' THEN
    UPDATE chat_diff_statuses SET
      url = p_pr ->> 'url',
      pull_request_state = p_pr ->> 'state',
      pull_request_title = COALESCE(p_pr ->> 'title', ''),
      pull_request_draft = COALESCE((p_pr ->> 'draft')::boolean, false),
      pr_number = (p_pr ->> 'number')::integer,
      additions = COALESCE((p_pr ->> 'additions')::integer, 0),
      deletions = COALESCE((p_pr ->> 'deletions')::integer, 0),
      changed_files = COALESCE((p_pr ->> 'changed_files')::integer, 0),
      changes_requested = COALESCE((p_pr ->> 'changes_requested')::boolean, false),
      refreshed_at = chat_clock_now(),
      stale_at = chat_clock_now() + CASE WHEN p_pr ->> 'state' = 'merged'
        THEN interval '1 day' ELSE interval '120 seconds' END,
      updated_at = chat_clock_now(),
      last_error = NULL
    WHERE chat_id = p_chat_id;
  ELSIF p_outcome = 'no_pr' THEN
    UPDATE chat_diff_statuses SET last_error = NULL,
      stale_at = CASE WHEN updated_at > chat_clock_now() - interval '2 minutes'
        THEN chat_clock_now() + interval '15 seconds' ELSE stale_at END
    WHERE chat_id = p_chat_id;
  ELSIF p_outcome = 'error' THEN
    UPDATE chat_diff_statuses
    SET stale_at = chat_clock_now() + interval '120 seconds', last_error = p_error
    WHERE chat_id = p_chat_id;
  ELSE
    INSERT INTO chat_forge_backoffs (host, token_user_id, until)
    VALUES (v_row.forge_host, p_token_user_id, p_until)
    ON CONFLICT (host, token_user_id)
      DO UPDATE SET until = greatest(chat_forge_backoffs.until, excluded.until);
    UPDATE chat_diff_statuses SET stale_at = greatest(p_until, stale_at), last_error = p_error
    WHERE chat_id = p_chat_id;
  END IF;
  RETURN true;
END;
$$;
