-- Guards shared by every feature's rules: the locks (and the global lock order below), the
-- owner and writability checks, model resolution and file linking. Loaded before every other
-- routine file (src/db/migrate.ts), so a SQL-language function elsewhere may call these at once.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
--
-- WARNING (lock order). Every routine in sql/ that holds more than one lock takes them in this
-- order. A level may be skipped; a routine never goes back to a higher level once it holds a lower
-- one, so no two routines can wait for each other in a cycle (docs/sql.md "Lock order"):
--   1. the owner's pin lock (chat_lock_pins): archive, unarchive and pin changes of one owner;
--   2. the family lock (chat_lock_family, keyed by the root chat): exclusive for an archive or
--      unarchive in the family, shared for creating a child in it or binding one of its chats
--      (so the agents an archive or unarchive reads stay its family's until it commits); then a
--      binding's workspace row FOR SHARE (a new build waits, so the latest build stays put);
--   3. an agent's context snapshot row (workspace_agent_contexts): FOR UPDATE by a push, FOR SHARE
--      by whatever pins from it or binds a chat to its agent (chat_lock_agent_snapshot; before an
--      agent's first push, its workspace_agents row stands in); several in agent id order;
--   3a. an agent's session row (workspace_agent_sessions): FOR UPDATE by a new agent process
--      (workspace_agent_session_start), FOR SHARE by a tool call's start;
--   3b. a runner's row (chat_runners): its claim and its shutdown lock it before the chats they
--      lease or release; the reaper (DeleteStaleChatRunners) deletes it and locks nothing else;
--   4. chat rows. A routine that locks several locks all it will change in one statement, in id
--      order (chat_lock_rows), before it changes any of them; or it skips rows others hold
--      (SKIP LOCKED: the claim, recovery) and never waits;
--   5. an owner's spend lock in one organization (chat_lock_spend): shared by the spend check of
--      a create or a send, exclusive by whatever stores assistant messages (their cost), after
--      the chat's row (a new chat's row, which nobody can wait for, may come after it);
--   6. a chat's messages, queue, pinned context and workspace tool calls, after the chat's row
--      (a tool call's start, which changes no message, locks its call row alone).
-- test/sql/*.test.ts holds each pair of routines that could invert this with two real sessions.

-- The clock of the rules that wait or count in periods (spend periods, diff-status backoffs):
-- now(), unless the session set pgchatd.clock_now (tests move it across boundaries; the server
-- never sets it).
CREATE OR REPLACE FUNCTION chat_clock_now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT COALESCE(NULLIF(current_setting('pgchatd.clock_now', true), '')::timestamptz, now());
$$;


-- Serialises pin changes (and archives, which clear pins) of one owner, so pin_order stays a
-- dense 1..n however many requests race. Transaction-scoped.
CREATE OR REPLACE FUNCTION chat_lock_pins(p_owner_id uuid) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(hashtext('pgchatd.chat_pins'), hashtext(p_owner_id::text));
$$;

-- Serialises changes to the shape of one family (the root and its descendants): an archive or
-- unarchive holds it exclusively, a child's creation shares it. So the descendants an archive
-- reads are all there are until it commits, and a child is never created under a parent that an
-- archive is about to archive ("parent archived => children archived"). Transaction-scoped.
CREATE OR REPLACE FUNCTION chat_lock_family(p_root_id uuid, p_exclusive boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_exclusive THEN
    PERFORM pg_advisory_xact_lock(hashtext('pgchatd.chat_family'), hashtext(p_root_id::text));
  ELSE
    PERFORM pg_advisory_xact_lock_shared(hashtext('pgchatd.chat_family'), hashtext(p_root_id::text));
  END IF;
END;
$$;

-- Orders spend checks against the spending they check: a create or a send holds it shared while
-- it compares the owner's spend in the organization with the limit and admits the message; the
-- statement that stores assistant messages (their cost, chat_messages_600_roll_up_cost) holds it
-- exclusively. So no message is admitted on a spend that a committing turn has already raised
-- past the limit, and sends do not wait for each other. Transaction-scoped.
CREATE OR REPLACE FUNCTION chat_lock_spend(p_owner_id uuid, p_organization_id uuid, p_exclusive boolean)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_exclusive THEN
    PERFORM pg_advisory_xact_lock(hashtext('pgchatd.chat_spend'),
      hashtext(p_owner_id::text || p_organization_id::text));
  ELSE
    PERFORM pg_advisory_xact_lock_shared(hashtext('pgchatd.chat_spend'),
      hashtext(p_owner_id::text || p_organization_id::text));
  END IF;
END;
$$;

-- Locks the given chat rows (FOR NO KEY UPDATE), in id order, in one statement: the only way a
-- routine locks more than one chat (see the lock order above). The sort runs below the row
-- locking, so the rows are locked in that order whatever plan finds them.
CREATE OR REPLACE FUNCTION chat_lock_rows(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM chats WHERE id = ANY (p_ids) ORDER BY id FOR NO KEY UPDATE;
END;
$$;

-- Takes an agent's snapshot row FOR SHARE (level 3), before the chat rows that will be bound to
-- it or pinned from it: a push holding the row FOR UPDATE updates the agent's chats next. An agent
-- that has no snapshot yet has no row to lock: its own row stands in (the first push holds it
-- FOR NO KEY UPDATE while it creates the snapshot), so a binding waits for a first push in
-- progress and then pins what it pushed.
CREATE OR REPLACE FUNCTION chat_lock_agent_snapshot(p_agent_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_agent_id IS NULL THEN
    RETURN;
  END IF;
  PERFORM 1 FROM workspace_agent_contexts WHERE agent_id = p_agent_id FOR SHARE;
  IF NOT FOUND THEN
    PERFORM 1 FROM workspace_agents WHERE id = p_agent_id FOR SHARE;
    -- A first push waited for above has created the snapshot: lock it too, before any chat row
    -- (a later push takes it FOR UPDATE and then the chats).
    PERFORM 1 FROM workspace_agent_contexts WHERE agent_id = p_agent_id FOR SHARE;
  END IF;
END;
$$;

-- Several agents' snapshots (chat_lock_agent_snapshot), in agent id order: an unarchive compares
-- the chats it restores with the snapshots of their agents, so it takes them all before the rows.
CREATE OR REPLACE FUNCTION chat_lock_agent_snapshots(p_agent_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_agent uuid;
BEGIN
  FOR v_agent IN
    SELECT DISTINCT a FROM unnest(p_agent_ids) a WHERE a IS NOT NULL ORDER BY a
  LOOP
    PERFORM chat_lock_agent_snapshot(v_agent);
  END LOOP;
END;
$$;

-- Locks the owner's chat for a transition. PC404 when it is missing or someone else's.
CREATE OR REPLACE FUNCTION chat_lock_for_owner(p_chat_id uuid, p_owner_id uuid) RETURNS chats
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id AND owner_id = p_owner_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
  RETURN v_chat;
END;
$$;

CREATE OR REPLACE FUNCTION chat_require_writable(p_chat chats) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_chat.archived THEN
    RAISE EXCEPTION 'Chat is archived.' USING ERRCODE = 'PC400', DETAIL = 'Unarchive the chat to change it.';
  END IF;
END;
$$;

-- The chat an agent's chat-context request is about, locked: `p_chat_id` when it is bound to the
-- agent (PC404 otherwise: another agent's chat looks missing), else the agent's one active root
-- chat (PC400 when it has none or several). Archived chats are read-only (PC400).
CREATE OR REPLACE FUNCTION chat_lock_for_agent(p_agent_id uuid, p_chat_id uuid) RETURNS chats
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_ids uuid[];
BEGIN
  IF p_chat_id IS NULL THEN
    SELECT array_agg(id) INTO v_ids FROM (
      SELECT id FROM chats
      WHERE agent_id = p_agent_id AND NOT archived AND parent_chat_id IS NULL
      LIMIT 2
    ) c;
    IF v_ids IS NULL THEN
      RAISE EXCEPTION 'The agent has no active chat.' USING ERRCODE = 'PC400',
        DETAIL = 'Name the chat with chat_id.';
    ELSIF cardinality(v_ids) > 1 THEN
      RAISE EXCEPTION 'The agent has several active chats.' USING ERRCODE = 'PC400',
        DETAIL = 'Name the chat with chat_id.';
    END IF;
    p_chat_id := v_ids[1];
  END IF;
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id AND agent_id = p_agent_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
  PERFORM chat_require_writable(v_chat);
  RETURN v_chat;
END;
$$;

-- The build and agent a workspace binds chats to: its latest build and that build's first agent.
CREATE OR REPLACE FUNCTION workspace_latest_agent(p_workspace_id uuid, OUT build_id uuid, OUT agent_id uuid)
LANGUAGE sql STABLE AS $$
  SELECT b.id, a.id
  FROM workspaces w
  JOIN workspace_builds b ON b.workspace_id = w.id AND b.build_number = w.latest_build_number
  LEFT JOIN workspace_agents a ON a.build_id = b.id AND a.ordinal = 0
  WHERE w.id = p_workspace_id;
$$;

-- A workspace the owner may bind a chat in `p_organization_id` to, or PC400.
CREATE OR REPLACE FUNCTION chat_check_workspace(p_owner_id uuid, p_organization_id uuid, p_workspace_id uuid)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_ws workspaces;
BEGIN
  SELECT * INTO v_ws FROM workspaces WHERE id = p_workspace_id;
  IF NOT FOUND OR v_ws.owner_id <> p_owner_id THEN
    RAISE EXCEPTION 'Workspace not found.' USING ERRCODE = 'PC400';
  END IF;
  IF v_ws.organization_id <> p_organization_id THEN
    RAISE EXCEPTION 'Workspace belongs to another organization than the chat.' USING ERRCODE = 'PC400',
      DETAIL = format('workspace organization %s, chat organization %s', v_ws.organization_id, p_organization_id);
  END IF;
END;
$$;

-- The model a new chat or message runs on: the given config, else the default. PC400 when it is
-- unknown, disabled or deleted.
CREATE OR REPLACE FUNCTION chat_resolve_model(p_model_config_id uuid) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_id uuid;
BEGIN
  IF p_model_config_id IS NULL THEN
    SELECT m.id INTO v_id FROM chat_model_configs m WHERE m.is_default;
    IF v_id IS NULL THEN
      RAISE EXCEPTION 'No default model is configured.' USING ERRCODE = 'PC400';
    END IF;
    RETURN v_id;
  END IF;
  SELECT m.id INTO v_id
  FROM chat_model_configs m JOIN chat_providers p ON p.id = m.provider_id
  WHERE m.id = p_model_config_id AND m.enabled AND NOT m.deleted AND p.enabled;
  IF v_id IS NULL THEN
    RAISE EXCEPTION 'Unknown or disabled model config.' USING ERRCODE = 'PC400',
      DETAIL = format('model_config_id %s', p_model_config_id);
  END IF;
  RETURN v_id;
END;
$$;

-- A model config that is still usable (exists, enabled, not deleted, provider enabled), else the
-- fallback. Queued messages keep the model they were sent with unless it went away.
CREATE OR REPLACE FUNCTION chat_usable_model(p_model_config_id uuid, p_fallback uuid) RETURNS uuid
LANGUAGE sql STABLE AS $$
  SELECT COALESCE(
    (SELECT m.id FROM chat_model_configs m JOIN chat_providers p ON p.id = m.provider_id
     WHERE m.id = p_model_config_id AND m.enabled AND NOT m.deleted AND p.enabled),
    p_fallback);
$$;

-- Links the files a message's file parts name to the chat. They must be files the chat's owner
-- uploaded (PC400 otherwise), so a message can never reference someone else's file.
CREATE OR REPLACE FUNCTION chat_link_files(p_chat_id uuid, p_owner_id uuid, p_content jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_file_ids uuid[];
  v_found integer;
BEGIN
  SELECT array_agg(DISTINCT (part ->> 'file_id')::uuid) INTO v_file_ids
  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_content) = 'array' THEN p_content ELSE '[]' END) part
  WHERE part ->> 'type' = 'file';
  IF v_file_ids IS NULL THEN
    RETURN;
  END IF;
  -- Locked for the links below (as their foreign keys would): a file retention is deleting right
  -- now is waited for and then found missing, a clear PC400 instead of a foreign key error.
  SELECT count(*) INTO v_found FROM (
    SELECT 1 FROM chat_files WHERE id = ANY (v_file_ids) AND owner_id = p_owner_id
    ORDER BY id FOR KEY SHARE) f;
  IF v_found <> cardinality(v_file_ids) THEN
    RAISE EXCEPTION 'File not found.' USING ERRCODE = 'PC400',
      DETAIL = 'Every file part must name a file uploaded by the chat owner.';
  END IF;
  INSERT INTO chat_file_links (chat_id, file_id)
  SELECT p_chat_id, unnest(v_file_ids)
  ON CONFLICT (chat_id, file_id) DO NOTHING;
END;
$$;
