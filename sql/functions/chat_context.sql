-- Workspace context: agents push snapshots, chats pin copies, pushes mark chats dirty, context
-- files, and the audit entries of all of it. A push marks the bound chats itself
-- (workspace_agent_context_push calls chat_context_mark_agent) and returns its own count.
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.
--
-- WARNING (lock order): the global order in sql/functions/shared.sql: an agent's snapshot row
-- (workspace_agent_contexts) BEFORE the rows of chats. A push locks the snapshot (FOR UPDATE) and
-- then the bound chats in id order; whatever pins a chat from a snapshot or binds a chat to an
-- agent locks that snapshot (FOR SHARE, chat_lock_agent_snapshot) before the chat's row.

-- A resource's content hash: of its kind, source, status and body, so a rename or a status change
-- is a change too.
CREATE OR REPLACE FUNCTION chat_context_resource_hash(
  p_kind context_resource_kind, p_source text, p_status context_resource_status, p_body text
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(sha256(convert_to(
    p_kind::text || E'\n' || p_source || E'\n' || p_status::text || E'\n' || p_body, 'UTF8')), 'hex');
$$;

-- What changed between a chat's pinned copy and its agent's snapshot, by source, in source order:
-- [{source, change: added|removed|modified}]. Empty array when nothing did.
CREATE OR REPLACE FUNCTION chat_context_changes(p_chat_id uuid, p_agent_id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT COALESCE(jsonb_agg(jsonb_build_object(
      'source', COALESCE(a.source, p.source),
      'change', CASE WHEN p.source IS NULL THEN 'added' WHEN a.source IS NULL THEN 'removed'
                ELSE 'modified' END)
    ORDER BY COALESCE(a.source, p.source)), '[]')
  FROM (SELECT source, content_hash FROM chat_context_resources WHERE chat_id = p_chat_id) p
  FULL JOIN (
    SELECT source, content_hash FROM workspace_agent_context_resources WHERE agent_id = p_agent_id
  ) a ON a.source = p.source
  WHERE p.content_hash IS DISTINCT FROM a.content_hash;
$$;

-- context_error of a chat bound to an agent that has not pushed any context yet.
CREATE OR REPLACE FUNCTION chat_context_not_pushed_error() RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'The workspace agent has not pushed its context yet.' $$;

-- Compares chats bound to an agent with its current snapshot, whatever their marking was: pinned
-- other content -> dirty, with the sources that differ now (context_dirty_since kept from the
-- first marking); pinned exactly this content (a push restored it) -> clean. Only chats whose
-- marking changes are written, with an audit entry each (context_dirty or context_clean; the
-- actor is p_actor_user_id, or the agent when NULL), and a pending "not pushed yet" error goes.
-- Only the given chats that are bound to the agent, unarchived and pinned: the caller holds the
-- snapshot and has locked these rows (lock order). Returns how many it marked dirty.
CREATE OR REPLACE FUNCTION chat_context_mark(
  p_agent_id uuid, p_chat_ids uuid[], p_actor_user_id uuid
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_snapshot workspace_agent_contexts;
  v_count integer;
BEGIN
  SELECT * INTO v_snapshot FROM workspace_agent_contexts WHERE agent_id = p_agent_id;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  -- MATERIALIZED: the changes are computed once per chat, not once per reference.
  WITH compared AS MATERIALIZED (
    SELECT c.id, c.context_dirty_resources AS was,
      CASE WHEN c.context_aggregate_hash <> v_snapshot.aggregate_hash
        THEN chat_context_changes(c.id, p_agent_id) END AS changes
    FROM chats c
    WHERE c.id = ANY (p_chat_ids) AND c.agent_id = p_agent_id AND NOT c.archived
      AND c.context_aggregate_hash IS NOT NULL
  ), marked AS (
    UPDATE chats c
    SET context_dirty_since = CASE WHEN m.changes IS NOT NULL THEN COALESCE(c.context_dirty_since, now()) END,
      context_dirty_resources = m.changes,
      context_error = NULLIF(c.context_error, chat_context_not_pushed_error())
    FROM compared m
    WHERE c.id = m.id AND (m.was IS DISTINCT FROM m.changes
      OR c.context_error = chat_context_not_pushed_error())
    RETURNING c.id, m.changes IS NOT NULL AS dirty, m.was IS DISTINCT FROM m.changes AS remarked
  ), logged AS (
    INSERT INTO audit_logs (actor_user_id, actor_agent_id, action, chat_id, agent_id, detail)
    SELECT p_actor_user_id, CASE WHEN p_actor_user_id IS NULL THEN p_agent_id END,
      CASE WHEN m.dirty THEN 'context_dirty' ELSE 'context_clean' END, m.id, p_agent_id,
      jsonb_build_object('aggregate_hash', v_snapshot.aggregate_hash, 'version', v_snapshot.version)
    FROM marked m
    WHERE m.remarked
    RETURNING action
  )
  SELECT count(*) FILTER (WHERE action = 'context_dirty') INTO v_count FROM logged;
  RETURN v_count;
END;
$$;

-- Every unarchived chat bound to the agent, locked in id order and compared with its snapshot
-- (chat_context_mark): what a push whose content changed does, in its own transaction. The
-- caller holds the snapshot FOR UPDATE. Returns how many it marked dirty.
CREATE OR REPLACE FUNCTION chat_context_mark_agent(p_agent_id uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_ids uuid[];
BEGIN
  -- Collected from the locking statement itself: a chat unarchived or bound after it is not
  -- compared here (its unarchive or its binding compares or pins it), and never written
  -- without its lock.
  SELECT COALESCE(array_agg(l.id), '{}') INTO v_ids FROM (
    SELECT id FROM chats WHERE agent_id = p_agent_id AND NOT archived ORDER BY id FOR NO KEY UPDATE
  ) l;
  -- A chat bound before the agent ever pushed has nothing pinned and says so; it has now (its
  -- next turn pins the content).
  UPDATE chats SET context_error = NULL
  WHERE id = ANY (v_ids) AND context_aggregate_hash IS NULL
    AND context_error = chat_context_not_pushed_error();
  RETURN chat_context_mark(p_agent_id, v_ids, NULL);
END;
$$;

-- A pushed ContextPush's resources as rows, with their content hashes (defaults: status ok,
-- body ''). The route validated shapes and sizes.
CREATE OR REPLACE FUNCTION chat_context_pushed_resources(p_resources jsonb)
RETURNS TABLE (
  source text, kind context_resource_kind, body text, status context_resource_status,
  error text, content_hash text
)
LANGUAGE sql IMMUTABLE AS $$
  SELECT r.source, r.kind, COALESCE(r.body, ''), COALESCE(r.status, 'ok'), r.error,
    chat_context_resource_hash(r.kind, r.source, COALESCE(r.status, 'ok'), COALESCE(r.body, ''))
  FROM jsonb_to_recordset(p_resources) AS r(source text, kind context_resource_kind, body text,
    status context_resource_status, error text);
$$;

-- PUT /workspaceagents/me/context. Stores the agent's snapshot and returns its aggregate hash
-- (sha256 over the sorted content hashes of the resources) and how many chats it marked dirty.
-- A push whose aggregate hash equals the stored one changes no resource and marks nothing (only
-- received_at and error move). Otherwise the resources are replaced, the snapshot row is
-- updated, and every unarchived chat bound to the agent is compared with the new content
-- (chat_context_mark_agent) in this same transaction and in one statement: the `context_dirty`
-- events go out with the push's commit, and a rolled-back push marks nothing. The snapshot row
-- is locked FOR UPDATE first, so a chat pinning from it meanwhile either committed first (and is
-- compared here) or waits and pins the new content.
-- p_resources: [{source, kind, body, status?, error?}].
CREATE OR REPLACE FUNCTION workspace_agent_context_push(
  p_agent_id uuid, p_resources jsonb, p_error text,
  OUT pushed_hash text, OUT marked_dirty integer
)
LANGUAGE plpgsql AS $$
DECLARE
  v_old text;
  v_count integer;
BEGIN
  SELECT encode(sha256(convert_to(COALESCE(string_agg(r.content_hash, ',' ORDER BY r.content_hash),
    ''), 'UTF8')), 'hex'), count(*)
  INTO pushed_hash, v_count
  FROM chat_context_pushed_resources(p_resources) r;

  -- The snapshot row lock orders this push against pins of it (see the WARNING above).
  SELECT s.aggregate_hash INTO v_old FROM workspace_agent_contexts s
  WHERE s.agent_id = p_agent_id FOR UPDATE;
  IF NOT FOUND THEN
    -- The first push: there is no snapshot row to lock yet, so the agent's row stands in for it
    -- (chat_lock_agent_snapshot waits on it FOR SHARE): a chat bound to the agent meanwhile
    -- either committed first, and is compared below, or waits and pins this content.
    PERFORM 1 FROM workspace_agents WHERE id = p_agent_id FOR NO KEY UPDATE;
    SELECT s.aggregate_hash INTO v_old FROM workspace_agent_contexts s
    WHERE s.agent_id = p_agent_id FOR UPDATE;
  END IF;
  IF NOT FOUND THEN
    INSERT INTO workspace_agent_contexts (agent_id, aggregate_hash, error)
    VALUES (p_agent_id, pushed_hash, p_error);
    INSERT INTO workspace_agent_context_resources
      (agent_id, source, kind, body, content_hash, size, status, error)
    SELECT p_agent_id, r.source, r.kind, r.body, r.content_hash, octet_length(r.body), r.status,
      r.error
    FROM chat_context_pushed_resources(p_resources) r;
    -- Chats bound to the agent before it had a snapshot kept what they had pinned (another
    -- agent's content, e.g. the previous build's): compared with the first snapshot like any.
    marked_dirty := chat_context_mark_agent(p_agent_id);
    v_old := NULL;
  ELSIF v_old = pushed_hash THEN
    UPDATE workspace_agent_contexts SET received_at = now(), error = p_error
    WHERE agent_id = p_agent_id;
    marked_dirty := 0;
  ELSE
    DELETE FROM workspace_agent_context_resources WHERE agent_id = p_agent_id;
    INSERT INTO workspace_agent_context_resources
      (agent_id, source, kind, body, content_hash, size, status, error)
    SELECT p_agent_id, r.source, r.kind, r.body, r.content_hash, octet_length(r.body), r.status,
      r.error
    FROM chat_context_pushed_resources(p_resources) r;
    UPDATE workspace_agent_contexts
    SET aggregate_hash = pushed_hash, version = version + 1, received_at = now(), error = p_error
    WHERE agent_id = p_agent_id;
    marked_dirty := chat_context_mark_agent(p_agent_id);
  END IF;

  INSERT INTO audit_logs (actor_agent_id, action, agent_id, detail)
  VALUES (p_agent_id, 'context_push', p_agent_id, jsonb_build_object(
    'aggregate_hash', pushed_hash, 'resources', v_count,
    'changed', v_old IS DISTINCT FROM pushed_hash, 'marked_dirty', marked_dirty));
END;
$$;

-- Pins the current snapshot of the chat's agent: its resources are copied to the chat, its hash
-- becomes the chat's, dirty is cleared, and the agent's own error (if any) becomes context_error.
-- An agent that never pushed leaves the chat as it was, with context_error saying so. No-op for
-- a chat bound to no agent. p_action: 'context_pin' (asked for) or 'context_hydrate' (a chat
-- without pinned context, at binding or at its next turn). Takes the snapshot, then the chat's
-- row, then writes the copy (the lock order; callers that hold them already lose nothing), so
-- two pins of one chat serialise on its row.
CREATE OR REPLACE FUNCTION chat_context_pin(
  p_chat_id uuid, p_agent_id uuid, p_actor_user_id uuid, p_action text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_snapshot workspace_agent_contexts;
BEGIN
  IF p_agent_id IS NULL THEN
    RETURN;
  END IF;
  PERFORM chat_lock_agent_snapshot(p_agent_id);
  SELECT * INTO v_snapshot FROM workspace_agent_contexts WHERE agent_id = p_agent_id;
  PERFORM 1 FROM chats WHERE id = p_chat_id FOR NO KEY UPDATE;
  IF v_snapshot.agent_id IS NULL THEN
    UPDATE chats SET context_error = chat_context_not_pushed_error()
    WHERE id = p_chat_id AND context_error IS DISTINCT FROM chat_context_not_pushed_error();
    INSERT INTO audit_logs (actor_user_id, action, chat_id, agent_id, detail)
    VALUES (p_actor_user_id, p_action, p_chat_id, p_agent_id,
      jsonb_build_object('error', 'no context snapshot'));
    RETURN;
  END IF;
  DELETE FROM chat_context_resources WHERE chat_id = p_chat_id;
  INSERT INTO chat_context_resources (chat_id, source, kind, body, content_hash, size, status, error)
  SELECT p_chat_id, source, kind, body, content_hash, size, status, error
  FROM workspace_agent_context_resources WHERE agent_id = p_agent_id;
  UPDATE chats SET context_aggregate_hash = v_snapshot.aggregate_hash,
    context_dirty_since = NULL, context_dirty_resources = NULL, context_error = v_snapshot.error
  WHERE id = p_chat_id;
  INSERT INTO audit_logs (actor_user_id, action, chat_id, agent_id, detail)
  VALUES (p_actor_user_id, p_action, p_chat_id, p_agent_id,
    jsonb_build_object('aggregate_hash', v_snapshot.aggregate_hash, 'version', v_snapshot.version));
END;
$$;

-- PUT /{chat}/context: re-pins the bound agent's current snapshot for the chat's owner. PC404 for
-- another owner's chat, PC400 for a chat bound to no workspace agent or archived. The snapshot is
-- locked before the chat (a push holding the snapshot updates the chat next), and the binding is
-- checked again under the chat's lock.
CREATE OR REPLACE FUNCTION chat_context_repin(p_chat_id uuid, p_owner_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_agent uuid;
  v_chat chats;
BEGIN
  SELECT agent_id INTO v_agent FROM chats WHERE id = p_chat_id AND owner_id = p_owner_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
  PERFORM chat_lock_agent_snapshot(v_agent);
  v_chat := chat_lock_for_owner(p_chat_id, p_owner_id);
  PERFORM chat_require_writable(v_chat);
  IF v_chat.agent_id IS NULL THEN
    RAISE EXCEPTION 'The chat is not bound to a workspace agent.' USING ERRCODE = 'PC400',
      DETAIL = 'Bind it to a workspace (PATCH workspace_id) to pin its context.';
  END IF;
  IF v_chat.agent_id IS DISTINCT FROM v_agent THEN
    RAISE EXCEPTION 'The chat was bound to another agent meanwhile.' USING ERRCODE = 'PC409',
      DETAIL = 'Try again.';
  END IF;
  PERFORM chat_context_pin(p_chat_id, v_agent, p_owner_id, 'context_pin');
END;
$$;

-- Before a turn of a chat bound to a workspace: a newer build of the workspace re-binds the chat
-- to that build's first agent (docs/api.md) and re-pins from it; a chat bound to an agent without
-- pinned context is hydrated. Context problems are recorded in context_error, never raised: they
-- must not block the turn. No-op for a chat without a workspace. The snapshot, then the chat's
-- row (lock order), and only if the binding and the pin are still as first read: a PATCH of the
-- workspace, or a re-pin, that committed meanwhile has bound and pinned the chat itself.
CREATE OR REPLACE FUNCTION chat_run_prepare_context(p_chat_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
  v_build uuid;
  v_agent uuid;
BEGIN
  SELECT * INTO v_chat FROM chats WHERE id = p_chat_id;
  IF NOT FOUND OR v_chat.workspace_id IS NULL THEN
    RETURN;
  END IF;
  SELECT l.build_id, l.agent_id INTO v_build, v_agent FROM workspace_latest_agent(v_chat.workspace_id) l;
  IF (v_build, v_agent) IS NOT DISTINCT FROM (v_chat.build_id, v_chat.agent_id)
     AND (v_agent IS NULL OR v_chat.context_aggregate_hash IS NOT NULL) THEN
    RETURN;
  END IF;
  -- A re-binding changes the family's agents: the family lock, shared, keeps it out of an
  -- archive or unarchive of the family that has read them (chat_lock_for_update).
  PERFORM chat_lock_family(COALESCE(v_chat.root_chat_id, v_chat.id), false);
  PERFORM chat_lock_agent_snapshot(v_agent);
  PERFORM 1 FROM chats c
  WHERE c.id = p_chat_id
    AND (c.workspace_id, c.build_id, c.agent_id, c.context_aggregate_hash)
      IS NOT DISTINCT FROM
      (v_chat.workspace_id, v_chat.build_id, v_chat.agent_id, v_chat.context_aggregate_hash)
  FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  PERFORM chat_bind_workspace(p_chat_id, v_chat.workspace_id, v_build, v_agent, NULL, true);
END;
$$;

-- POST /workspaceagents/me/chat-context: the files as one model-only message of context-file
-- parts (subagent chats spawned later copy it, chat_create). p_files: [{path, content}].
CREATE OR REPLACE FUNCTION chat_context_files_add(
  p_agent_id uuid, p_chat_id uuid, p_files jsonb, OUT chat_id uuid, OUT added integer
)
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  v_chat := chat_lock_for_agent(p_agent_id, p_chat_id);
  chat_id := v_chat.id;
  added := jsonb_array_length(p_files);
  INSERT INTO chat_messages (chat_id, role, content, visibility)
  SELECT v_chat.id, 'user', jsonb_agg(jsonb_build_object(
      'type', 'context-file', 'context_file_path', f ->> 'path',
      'context_file_content', f ->> 'content') ORDER BY n), 'model'
  FROM jsonb_array_elements(p_files) WITH ORDINALITY AS e(f, n);
  INSERT INTO audit_logs (actor_agent_id, action, chat_id, agent_id, detail)
  VALUES (p_agent_id, 'chat_context_add', v_chat.id, p_agent_id, jsonb_build_object(
    'paths', (SELECT jsonb_agg(f ->> 'path') FROM jsonb_array_elements(p_files) f)));
END;
$$;

-- DELETE /workspaceagents/me/chat-context: soft-deletes the chat's context-file messages; returns
-- how many files they held.
CREATE OR REPLACE FUNCTION chat_context_files_clear(
  p_agent_id uuid, p_chat_id uuid, OUT chat_id uuid, OUT removed integer
)
LANGUAGE plpgsql AS $$
DECLARE
  v_chat chats;
BEGIN
  v_chat := chat_lock_for_agent(p_agent_id, p_chat_id);
  chat_id := v_chat.id;
  WITH gone AS (
    UPDATE chat_messages m SET deleted = true
    WHERE m.chat_id = v_chat.id AND NOT m.deleted
      AND jsonb_typeof(m.content) = 'array' AND m.content @> '[{"type": "context-file"}]'
    RETURNING m.content
  )
  SELECT COALESCE(sum((
    SELECT count(*) FROM jsonb_array_elements(g.content) p WHERE p ->> 'type' = 'context-file'
  )), 0)::integer
  INTO removed FROM gone g;
  INSERT INTO audit_logs (actor_agent_id, action, chat_id, agent_id, detail)
  VALUES (p_agent_id, 'chat_context_clear', v_chat.id, p_agent_id,
    jsonb_build_object('removed', removed));
END;
$$;
