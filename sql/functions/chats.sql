-- Chat rules: creation, archive cascade, pins, updates, workspace binding, read cursor.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
-- Locks and guards these rules share live in shared.sql, with the global lock order.

-- The most JSON text a chat's client-declared tools may take (chats__check_dynamic_tools): a
-- generous set of 250 tools with long descriptions and schemas fits; the bound keeps a chat row's
-- TOAST small for the turns that read it.
CREATE OR REPLACE FUNCTION chat_dynamic_tools_max_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 262144 $$;

-- The title a chat gets before one is generated: the first text part, whitespace collapsed,
-- trimmed to 60 characters;
-- '' when there is no such part (a message of files only).
CREATE OR REPLACE FUNCTION chat_fallback_title(p_content jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT COALESCE((
    SELECT left(btrim(regexp_replace(part ->> 'text', '\s+', ' ', 'g')), 60)
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_content) = 'array' THEN p_content ELSE '[]' END)
      WITH ORDINALITY AS e(part, n)
    WHERE part ->> 'type' = 'text' AND btrim(part ->> 'text') <> ''
    ORDER BY n
    LIMIT 1
  ), '');
$$;

-- Creates a chat in its final state (status pending) with its first messages, in one call.
-- The parent a new child chat is created under: the owner's (PC400 "Parent chat not found."
-- otherwise) and not archived (PC400): "parent archived => children archived". chat_create checks
-- it under the family lock; the insert trigger chats__check_family checks it again for any other
-- writer of chats, and derives the child's root from it.
CREATE OR REPLACE FUNCTION chat_require_parent(p_parent_chat_id uuid, p_owner_id uuid)
RETURNS chats
LANGUAGE plpgsql AS $$
DECLARE
  v_parent chats;
BEGIN
  SELECT * INTO v_parent FROM chats WHERE id = p_parent_chat_id;
  IF NOT FOUND OR v_parent.owner_id <> p_owner_id THEN
    RAISE EXCEPTION 'Parent chat not found.' USING ERRCODE = 'PC400';
  END IF;
  IF v_parent.archived THEN
    RAISE EXCEPTION 'Chat is archived.' USING ERRCODE = 'PC400', DETAIL = 'The parent chat is archived.';
  END IF;
  RETURN v_parent;
END;
$$;

-- A child (p_parent_chat_id) inherits organization, client type, workspace binding and model
-- (unless one is given), and copies the parent's context-file messages.
-- p_content is the first user message's Part[]; its file parts must name the owner's files.
-- Audited as chat_create with the API key (p_api_key_id) that created it. p_mcp_server_ids is
-- stored and shown (a child inherits its parent's unless given); no MCP server runs here.
CREATE OR REPLACE FUNCTION chat_create(
  p_owner_id uuid,
  p_organization_id uuid,
  p_workspace_id uuid,
  p_model_config_id uuid,
  p_parent_chat_id uuid,
  p_client_type chat_client_type,
  p_mode text,
  p_plan_mode text,
  p_labels jsonb,
  p_dynamic_tools jsonb,
  p_system_prompt text,
  p_content jsonb,
  p_api_key_id text,
  p_mcp_server_ids uuid[]
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  v_parent chats;
  v_org uuid := p_organization_id;
  v_client chat_client_type := COALESCE(p_client_type, 'api');
  v_workspace uuid := p_workspace_id;
  v_build uuid;
  v_agent uuid;
  v_model uuid;
  v_id uuid;
  v_message bigint;
  v_mcp uuid[] := p_mcp_server_ids;
BEGIN
  IF cardinality(p_mcp_server_ids) > 64 OR array_ndims(p_mcp_server_ids) > 1
     OR array_position(p_mcp_server_ids, NULL) IS NOT NULL
     OR cardinality(p_mcp_server_ids) <> (SELECT count(DISTINCT x) FROM unnest(p_mcp_server_ids) x)
  THEN
    RAISE EXCEPTION 'mcp_server_ids must be at most 64 distinct ids.' USING ERRCODE = 'PC400';
  END IF;
  IF p_parent_chat_id IS NOT NULL THEN
    -- No row lock on the parent: its family and organization never change, the family lock
    -- orders this creation against archives (whose archived flag it reads), and its binding is
    -- taken as it was when read. Locking the parent before the agent's snapshot would also invert
    -- the lock order against a push (which locks the snapshot, then the parent).
    SELECT * INTO v_parent FROM chats WHERE id = p_parent_chat_id AND owner_id = p_owner_id;
    IF FOUND THEN
      PERFORM chat_lock_family(COALESCE(v_parent.root_chat_id, v_parent.id), false);
    END IF;
    -- Checked under the family lock: an archive that held it has committed by now.
    v_parent := chat_require_parent(p_parent_chat_id, p_owner_id);
    IF p_organization_id IS NOT NULL AND p_organization_id <> v_parent.organization_id THEN
      RAISE EXCEPTION 'A child chat belongs to its parent''s organization.' USING ERRCODE = 'PC400';
    END IF;
    IF p_workspace_id IS NOT NULL AND p_workspace_id IS DISTINCT FROM v_parent.workspace_id THEN
      RAISE EXCEPTION 'A child chat is bound to its parent''s workspace.' USING ERRCODE = 'PC400';
    END IF;
    v_org := v_parent.organization_id;
    v_client := v_parent.client_type;
    v_workspace := v_parent.workspace_id;
    v_build := v_parent.build_id;
    v_agent := v_parent.agent_id;
    v_model := chat_resolve_model(COALESCE(p_model_config_id, v_parent.last_model_config_id));
    v_mcp := COALESCE(v_mcp, v_parent.mcp_server_ids);
  ELSE
    IF v_workspace IS NOT NULL THEN
      PERFORM chat_check_workspace(p_owner_id, v_org, v_workspace);
      SELECT l.build_id, l.agent_id INTO v_build, v_agent FROM workspace_latest_agent(v_workspace) l;
    END IF;
    v_model := chat_resolve_model(p_model_config_id);
  END IF;
  -- Level 3 before the new chat's row and its messages (chat_context_pin below pins from it).
  PERFORM chat_lock_agent_snapshot(v_agent);
  -- Level 5 (the new row cannot be waited for): 409 when the owner is at the spend limit.
  PERFORM chat_require_spend_under_limit(p_owner_id, v_org);

  -- The final status in the INSERT itself: a trigger sees the chat as it will be committed.
  -- status: a new chat is pending (docs/sql.md "Chat status").
  INSERT INTO chats (
    owner_id, organization_id, workspace_id, build_id, agent_id, parent_chat_id,
    last_model_config_id, title, status, mode, plan_mode, client_type, labels, dynamic_tools,
    api_key_id, mcp_server_ids
  ) VALUES (
    p_owner_id, v_org, v_workspace, v_build, v_agent, p_parent_chat_id,
    v_model, chat_fallback_title(p_content), 'pending', p_mode, p_plan_mode, v_client,
    COALESCE(p_labels, '{}'), COALESCE(p_dynamic_tools, '[]'), p_api_key_id, COALESCE(v_mcp, '{}')
  ) RETURNING id INTO v_id;

  IF p_system_prompt IS NOT NULL AND btrim(p_system_prompt) <> '' THEN
    INSERT INTO chat_messages (chat_id, role, content, visibility, created_by, api_key_id)
    VALUES (v_id, 'system', jsonb_build_array(jsonb_build_object('type', 'text', 'text', p_system_prompt)),
      'model', p_owner_id, p_api_key_id);
  END IF;

  IF v_parent.id IS NOT NULL THEN
    INSERT INTO chat_messages (chat_id, role, content, visibility, created_by, api_key_id)
    SELECT v_id, m.role, m.content, m.visibility, m.created_by, m.api_key_id
    FROM chat_messages m
    WHERE m.chat_id = v_parent.id AND NOT m.deleted
      AND jsonb_typeof(m.content) = 'array' AND m.content @> '[{"type": "context-file"}]'
    ORDER BY m.id;
  END IF;

  INSERT INTO chat_messages (chat_id, role, content, visibility, model_config_id, created_by, api_key_id)
  VALUES (v_id, 'user', p_content, 'both', v_model, p_owner_id, p_api_key_id)
  RETURNING id INTO v_message;
  INSERT INTO audit_logs (actor_user_id, api_key_id, action, chat_id, detail)
  VALUES (p_owner_id, p_api_key_id, 'chat_create', v_id, jsonb_strip_nulls(jsonb_build_object(
    'message_id', v_message, 'parent_chat_id', p_parent_chat_id)));

  PERFORM chat_link_files(v_id, p_owner_id, p_content);
  -- Bound to an agent: it gets the agent's current context now (a child too: its own copy).
  PERFORM chat_context_pin(v_id, v_agent, p_owner_id, 'context_hydrate');
  RETURN v_id;
END;
$$;

-- The signature before p_mcp_server_ids, for servers of the previous release during an upgrade.
CREATE OR REPLACE FUNCTION chat_create(
  p_owner_id uuid, p_organization_id uuid, p_workspace_id uuid, p_model_config_id uuid,
  p_parent_chat_id uuid, p_client_type chat_client_type, p_mode text, p_plan_mode text,
  p_labels jsonb, p_dynamic_tools jsonb, p_system_prompt text, p_content jsonb, p_api_key_id text
) RETURNS uuid
LANGUAGE sql AS $$
  SELECT chat_create(p_owner_id, p_organization_id, p_workspace_id, p_model_config_id,
    p_parent_chat_id, p_client_type, p_mode, p_plan_mode, p_labels, p_dynamic_tools,
    p_system_prompt, p_content, p_api_key_id, NULL);
$$;

-- A chat and its descendants. Stable only under the family lock (chat_lock_family).
CREATE OR REPLACE FUNCTION chat_subtree_ids(p_chat_id uuid) RETURNS uuid[]
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE subtree (id) AS (
    SELECT p_chat_id
    UNION ALL
    SELECT c.id FROM chats c JOIN subtree s ON c.parent_chat_id = s.id
  )
  SELECT array_agg(id) FROM subtree;
$$;

-- Archives (or unarchives) a chat and its descendants; returns the ids that changed.
-- Archiving clears the pin (compacting the owner's other pins). A child may be archived alone,
-- but not unarchived while its parent is archived: "parent archived => children archived".
CREATE OR REPLACE FUNCTION chat_archive(p_chat_id uuid, p_archived boolean) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_subtree uuid[];
  v_parent_archived boolean;
BEGIN
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
  PERFORM chat_lock_pins(v_chat.owner_id);
  PERFORM chat_lock_family(COALESCE(v_chat.root_chat_id, v_chat.id), true);
  -- Under the family lock no chat joins the family and no archived flag in it changes, so this
  -- is the subtree until commit. Pins change only under the pin lock, so pin_order is current.
  v_subtree := chat_subtree_ids(p_chat_id);
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id;
  IF NOT p_archived THEN
    -- The restored chats are compared with their agents' snapshots below (level 3 first).
    PERFORM chat_lock_agent_snapshots(ARRAY(SELECT agent_id FROM chats WHERE id = ANY (v_subtree)));
  END IF;
  -- Every row changed below, in one id-ordered lock: the subtree, and when a pinned chat is
  -- archived the owner's pins after it (compacted).
  PERFORM chat_lock_rows(v_subtree || CASE WHEN p_archived AND v_chat.pin_order > 0 THEN ARRAY(
    SELECT id FROM chats WHERE owner_id = v_chat.owner_id AND pin_order > v_chat.pin_order)
    ELSE '{}'::uuid[] END);

  IF p_archived THEN
    IF v_chat.archived THEN
      RAISE EXCEPTION 'Chat is already archived.' USING ERRCODE = 'PC400';
    END IF;
    RETURN QUERY
    UPDATE chats c SET archived = true, pin_order = 0
    WHERE c.id = ANY (v_subtree) AND NOT c.archived
    RETURNING c.id;
    IF v_chat.pin_order > 0 THEN
      UPDATE chats SET pin_order = pin_order - 1
      WHERE owner_id = v_chat.owner_id AND pin_order > v_chat.pin_order;
    END IF;
  ELSE
    IF NOT v_chat.archived THEN
      RAISE EXCEPTION 'Chat is not archived.' USING ERRCODE = 'PC400';
    END IF;
    IF v_chat.parent_chat_id IS NOT NULL THEN
      SELECT archived INTO v_parent_archived FROM chats WHERE id = v_chat.parent_chat_id;
      IF v_parent_archived THEN
        RAISE EXCEPTION 'Cannot unarchive a chat whose parent is archived.' USING ERRCODE = 'PC400',
          DETAIL = 'Unarchive the root chat; it restores the whole family.';
      END IF;
    END IF;
    RETURN QUERY
    UPDATE chats c SET archived = false
    WHERE c.id = ANY (v_subtree) AND c.archived
    RETURNING c.id;
    -- Pushes skip archived chats: each restored chat is compared with its agent's snapshot now,
    -- as a push would have. (A push waiting for these rows compares them again after commit.)
    PERFORM chat_context_mark(a.agent_id, a.ids, v_chat.owner_id)
    FROM (
      SELECT agent_id, array_agg(id) AS ids FROM chats
      WHERE id = ANY (v_subtree) AND agent_id IS NOT NULL
      GROUP BY agent_id
    ) a;
  END IF;
END;
$$;

-- Sets a chat's pin position. 0 unpins (the pins after it move up); a positive value appends an
-- unpinned chat at n+1 or moves a pinned one to that position, clamped to 1..n. Only unarchived
-- roots can be pinned.
CREATE OR REPLACE FUNCTION chat_pin(p_chat_id uuid, p_pin_order integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_owner uuid;
  v_chat chats;
  v_pinned integer;
  v_target integer;
BEGIN
  IF p_pin_order IS NULL OR p_pin_order < 0 THEN
    RAISE EXCEPTION 'pin_order must be 0 or a positive position.' USING ERRCODE = 'PC400';
  END IF;
  SELECT owner_id INTO v_owner FROM chats WHERE id = p_chat_id;
  IF v_owner IS NULL THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
  PERFORM chat_lock_pins(v_owner);
  -- The chat and the owner's pinned chats (the ones renumbered below), in one id-ordered lock.
  PERFORM chat_lock_rows(p_chat_id || ARRAY(
    SELECT id FROM chats WHERE owner_id = v_owner AND pin_order > 0));
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id;

  IF p_pin_order = 0 THEN
    IF v_chat.pin_order = 0 THEN
      RETURN;
    END IF;
    UPDATE chats SET pin_order = 0 WHERE id = p_chat_id;
    UPDATE chats SET pin_order = pin_order - 1 WHERE owner_id = v_owner AND pin_order > v_chat.pin_order;
    RETURN;
  END IF;

  IF v_chat.parent_chat_id IS NOT NULL THEN
    RAISE EXCEPTION 'Only root chats can be pinned.' USING ERRCODE = 'PC400';
  END IF;
  IF v_chat.archived THEN
    RAISE EXCEPTION 'Archived chats cannot be pinned.' USING ERRCODE = 'PC400';
  END IF;
  SELECT count(*) INTO v_pinned FROM chats WHERE owner_id = v_owner AND pin_order > 0;

  IF v_chat.pin_order = 0 THEN
    UPDATE chats SET pin_order = v_pinned + 1 WHERE id = p_chat_id;
    RETURN;
  END IF;

  v_target := least(p_pin_order, v_pinned);
  IF v_target = v_chat.pin_order THEN
    RETURN;
  ELSIF v_target < v_chat.pin_order THEN
    UPDATE chats SET pin_order = pin_order + 1
    WHERE owner_id = v_owner AND pin_order >= v_target AND pin_order < v_chat.pin_order;
  ELSE
    UPDATE chats SET pin_order = pin_order - 1
    WHERE owner_id = v_owner AND pin_order > v_chat.pin_order AND pin_order <= v_target;
  END IF;
  UPDATE chats SET pin_order = v_target WHERE id = p_chat_id;
END;
$$;

-- Binds a chat to a workspace's build and agent (p_build_id and p_agent_id: what
-- workspace_latest_agent gave the caller), or unbinds it (all NULL): the one body of a binding,
-- for a PATCH of the workspace (chat_set_workspace) and for the re-binding to a newer build before
-- a turn (chat_run_prepare_context). The caller has checked the workspace (chat_check_workspace),
-- locked the agent's snapshot and then the chat's row: binds exactly what it locked for, never a
-- build that landed since (the next turn re-binds to that). Bound to another agent, the chat pins
-- that agent's context (p_actor_user_id in the audit entry: the owner, or NULL for the server);
-- with p_hydrate also when it has none pinned yet. Unbound, the pinned copy stays.
CREATE OR REPLACE FUNCTION chat_bind_workspace(
  p_chat_id uuid, p_workspace_id uuid, p_build_id uuid, p_agent_id uuid,
  p_actor_user_id uuid, p_hydrate boolean
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id;
  UPDATE chats SET workspace_id = p_workspace_id, build_id = p_build_id, agent_id = p_agent_id
  WHERE id = p_chat_id
    AND (workspace_id, build_id, agent_id) IS DISTINCT FROM (p_workspace_id, p_build_id, p_agent_id);
  IF p_agent_id IS NOT NULL AND (p_agent_id IS DISTINCT FROM v_chat.agent_id
     OR (p_hydrate AND v_chat.context_aggregate_hash IS NULL)) THEN
    PERFORM chat_context_pin(p_chat_id, p_agent_id, p_actor_user_id, 'context_hydrate');
  END IF;
END;
$$;

-- The owner's chat, with every lock the named changes take, taken first and in the global lock
-- order (shared.sql): an archive or unarchive (p_archived not NULL), a pin change (p_pin), a
-- workspace binding (p_set_workspace; p_workspace_id NULL unbinds). Each rule below starts with
-- it, and PATCH /{chat} calls it once for all its fields before the rules, in one transaction:
-- the rules lock rows one after another (archive, then pin), which alone could hold a higher id
-- while waiting for a lower one, and a binding after an archive would take an agent's snapshot
-- (level 3) while holding chat rows (level 4). Under the pin and family locks the sets it locks
-- cannot change; taking a lock it already holds again is free, so the rules may repeat it.
-- A binding takes the family lock shared (so an archive or unarchive of the family, which takes
-- it exclusively, never sees its family's agents change between reading and locking them) and
-- the workspace's row FOR SHARE before it resolves the latest build: a build landing meanwhile
-- waits for this transaction, so a rule that resolves again later in it (chat_set_workspace)
-- finds the agent locked here, never one it would lock after the chat rows.
-- PC404 for another owner's chat, or one deleted while this waited; PC400 for a workspace the
-- chat cannot be bound to. Returns the build and agent a binding binds to (the latest).
CREATE OR REPLACE FUNCTION chat_lock_for_update(
  p_chat_id uuid,
  p_owner_id uuid,
  p_archived boolean,
  p_pin boolean,
  p_set_workspace boolean,
  p_workspace_id uuid,
  OUT build_id uuid,
  OUT agent_id uuid
)
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_family uuid[];
BEGIN
  -- Owner, organization and family never change, so this unlocked read cannot go stale.
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id AND owner_id = p_owner_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
  IF p_set_workspace AND p_workspace_id IS NOT NULL THEN
    PERFORM chat_check_workspace(p_owner_id, v_chat.organization_id, p_workspace_id);
  END IF;
  IF p_archived IS NOT NULL OR p_pin THEN
    PERFORM chat_lock_pins(p_owner_id);
  END IF;
  v_family := ARRAY[p_chat_id];
  IF p_archived IS NOT NULL THEN
    PERFORM chat_lock_family(COALESCE(v_chat.root_chat_id, v_chat.id), true);
    v_family := chat_subtree_ids(p_chat_id);
  ELSIF p_set_workspace THEN
    PERFORM chat_lock_family(COALESCE(v_chat.root_chat_id, v_chat.id), false);
  END IF;
  IF p_set_workspace AND p_workspace_id IS NOT NULL THEN
    PERFORM 1 FROM workspaces WHERE id = p_workspace_id FOR SHARE;
    SELECT l.build_id, l.agent_id INTO build_id, agent_id FROM workspace_latest_agent(p_workspace_id) l;
  END IF;
  -- Level 3: the snapshot the binding pins from, and those an unarchive compares with.
  PERFORM chat_lock_agent_snapshots(agent_id || CASE WHEN p_archived = false
    THEN ARRAY(SELECT c.agent_id FROM chats c WHERE c.id = ANY (v_family)) ELSE '{}'::uuid[] END);
  PERFORM chat_lock_rows(v_family
    || CASE WHEN p_archived IS NOT NULL OR p_pin THEN ARRAY(
      SELECT c.id FROM chats c WHERE c.owner_id = p_owner_id AND c.pin_order > 0)
      ELSE '{}'::uuid[] END);
  IF NOT EXISTS (SELECT 1 FROM chats c WHERE c.id = p_chat_id) THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
END;
$$;

-- ArchiveChat / UnarchiveChat (PATCH {archived}): the chat and its descendants, with an audit entry
-- each naming the caller's API key (chat_archive holds the cascade).
CREATE OR REPLACE FUNCTION chat_set_archived(
  p_chat_id uuid, p_owner_id uuid, p_archived boolean, p_api_key_id text
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_lock_for_update(p_chat_id, p_owner_id, p_archived, false, false, NULL);
  INSERT INTO audit_logs (actor_user_id, api_key_id, action, chat_id)
  SELECT p_owner_id, p_api_key_id, CASE WHEN p_archived THEN 'chat_archive' ELSE 'chat_unarchive' END, a.id
  FROM chat_archive(p_chat_id, p_archived) AS a(id);
END;
$$;

-- The previous signature, for servers of the previous release still running during an upgrade
-- (their PATCH {archived} would otherwise fail): their entries name no key. Remove it in the
-- release after this one.
CREATE OR REPLACE FUNCTION chat_set_archived(p_chat_id uuid, p_owner_id uuid, p_archived boolean)
RETURNS void
LANGUAGE sql AS $$
  SELECT chat_set_archived(p_chat_id, p_owner_id, p_archived, NULL::text);
$$;

-- PinChat / UnpinChat (PATCH {pin_order}): 0 unpins; a positive value pins an unpinned chat at
-- the end or moves a pinned one there (chat_pin keeps the pins dense).
CREATE OR REPLACE FUNCTION chat_set_pin(p_chat_id uuid, p_owner_id uuid, p_pin_order integer)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_lock_for_update(p_chat_id, p_owner_id, NULL, true, false, NULL);
  PERFORM chat_pin(p_chat_id, p_pin_order);
END;
$$;

-- BindChatWorkspace (PATCH {workspace_id}): binds the chat to the workspace's latest build and
-- its first agent and pins that agent's context, or unbinds (NULL).
CREATE OR REPLACE FUNCTION chat_set_workspace(p_chat_id uuid, p_owner_id uuid, p_workspace_id uuid)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_build uuid;
  v_agent uuid;
BEGIN
  SELECT l.build_id, l.agent_id INTO v_build, v_agent
  FROM chat_lock_for_update(p_chat_id, p_owner_id, NULL, false, true, p_workspace_id) l;
  PERFORM chat_bind_workspace(p_chat_id, p_workspace_id, v_build, v_agent, p_owner_id, false);
END;
$$;

-- Moves the owner's read cursor to the chat's newest message (stream connect and disconnect).
-- Never moves it backwards. Does not touch updated_at.
CREATE OR REPLACE FUNCTION chat_mark_read(p_chat_id uuid) RETURNS bigint
LANGUAGE sql AS $$
  UPDATE chats c SET last_read_message_id = m.newest
  FROM (SELECT max(id) AS newest FROM chat_messages WHERE chat_id = p_chat_id) m
  WHERE c.id = p_chat_id AND m.newest IS NOT NULL
    AND m.newest > COALESCE(c.last_read_message_id, 0)
  RETURNING c.last_read_message_id;
$$;
