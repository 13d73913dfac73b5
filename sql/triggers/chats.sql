-- Triggers on chats. Names: chats_<nnn>_<purpose>, fired in name order
-- (100 checks, 500 derived writes, 900 change events).

-- A child's family is derived, never trusted from the caller: root_chat_id is the parent's root
-- (or the parent), the parent belongs to the same owner, and an archived parent takes no children
-- (chat_require_parent, sql/functions/chats.sql: the same check chat_create makes).
CREATE OR REPLACE FUNCTION chats__check_family() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_parent chats;
BEGIN
  IF NEW.parent_chat_id IS NULL THEN
    NEW.root_chat_id := NULL;
    RETURN NEW;
  END IF;
  v_parent := chat_require_parent(NEW.parent_chat_id, NEW.owner_id);
  NEW.root_chat_id := COALESCE(v_parent.root_chat_id, v_parent.id);
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chats_100_check_family
  BEFORE INSERT ON chats
  FOR EACH ROW EXECUTE FUNCTION chats__check_family();

-- Identity and family never change after creation: events, caches and the list index rely on it.
CREATE OR REPLACE FUNCTION chats__check_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id <> OLD.id OR NEW.owner_id <> OLD.owner_id OR NEW.organization_id <> OLD.organization_id
     OR NEW.parent_chat_id IS DISTINCT FROM OLD.parent_chat_id
     OR NEW.root_chat_id IS DISTINCT FROM OLD.root_chat_id
     OR NEW.created_at <> OLD.created_at THEN
    RAISE EXCEPTION 'A chat''s id, owner, organization, family and creation time cannot change.'
      USING ERRCODE = 'PC400';
  END IF;
  RETURN NEW;
END;
$$;

-- Only when one of them is assigned: a heartbeat or a status change never enters plpgsql here.
CREATE OR REPLACE TRIGGER chats_100_check_immutable
  BEFORE UPDATE OF id, owner_id, organization_id, parent_chat_id, root_chat_id, created_at ON chats
  FOR EACH ROW EXECUTE FUNCTION chats__check_immutable();

-- Client-declared tools are a JSON array of at most chat_dynamic_tools_max_bytes() (docs/api.md
-- CreateChat; docs/api.md gives the limit). Checked only when the column is assigned, not as a
-- CHECK constraint: a CHECK is evaluated on every UPDATE of the row, and reading a large,
-- compressed value out of TOAST for each heartbeat cost more than the heartbeat itself.
CREATE OR REPLACE FUNCTION chats__check_dynamic_tools() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF jsonb_typeof(NEW.dynamic_tools) <> 'array' THEN
    RAISE EXCEPTION 'Dynamic tools must be a JSON array.' USING ERRCODE = 'PC400';
  END IF;
  IF octet_length(NEW.dynamic_tools::text) > chat_dynamic_tools_max_bytes() THEN
    RAISE EXCEPTION 'Dynamic tools are too large.' USING ERRCODE = 'PC400',
      DETAIL = format('unsafe_dynamic_tools: at most %s bytes of JSON, got %s',
        chat_dynamic_tools_max_bytes(), octet_length(NEW.dynamic_tools::text));
  END IF;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chats_100_check_dynamic_tools
  BEFORE INSERT OR UPDATE OF dynamic_tools ON chats
  FOR EACH ROW EXECUTE FUNCTION chats__check_dynamic_tools();

-- version moves on every change of the row (but a heartbeat), and status_changed_at with the
-- status. updated_at moves only for the changes docs/api.md lists:
-- status, archive state, pin position, labels and workspace binding (new user messages move it
-- from the chat_messages trigger). Title, summary, plan_mode, model, context marking and the read
-- cursor leave it alone. WARNING: an explicit SET updated_at is kept; only chat_messages uses it.
-- Fired only for the columns it compares (UPDATE OF), and it compares them one by one, never the
-- whole row: a heartbeat (heartbeat_at alone) does not enter it, and no update reads the
-- dynamic tools (chats__track_tool_changes does, when they are assigned).
CREATE OR REPLACE FUNCTION chats__track_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.status, NEW.archived, NEW.pin_order, NEW.updated_at, NEW.worker_id, NEW.started_at,
      NEW.workspace_id, NEW.build_id, NEW.agent_id, NEW.last_model_config_id, NEW.title,
      NEW.title_source, NEW.mode, NEW.plan_mode, NEW.client_type, NEW.api_key_id,
      NEW.last_read_message_id, NEW.context_aggregate_hash, NEW.context_dirty_since,
      NEW.context_error, NEW.mcp_server_ids, NEW.last_error, NEW.last_turn_summary, NEW.labels,
      NEW.context_dirty_resources)
     IS NOT DISTINCT FROM
     (OLD.status, OLD.archived, OLD.pin_order, OLD.updated_at, OLD.worker_id, OLD.started_at,
      OLD.workspace_id, OLD.build_id, OLD.agent_id, OLD.last_model_config_id, OLD.title,
      OLD.title_source, OLD.mode, OLD.plan_mode, OLD.client_type, OLD.api_key_id,
      OLD.last_read_message_id, OLD.context_aggregate_hash, OLD.context_dirty_since,
      OLD.context_error, OLD.mcp_server_ids, OLD.last_error, OLD.last_turn_summary, OLD.labels,
      OLD.context_dirty_resources) THEN
    RETURN NEW;
  END IF;
  NEW.version := OLD.version + 1;
  IF NEW.status IS DISTINCT FROM OLD.status THEN
    NEW.status_changed_at := now();
  END IF;
  IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at AND (
       NEW.status IS DISTINCT FROM OLD.status
       OR NEW.archived IS DISTINCT FROM OLD.archived
       OR NEW.pin_order IS DISTINCT FROM OLD.pin_order
       OR NEW.labels IS DISTINCT FROM OLD.labels
       OR NEW.workspace_id IS DISTINCT FROM OLD.workspace_id
       OR NEW.build_id IS DISTINCT FROM OLD.build_id
       OR NEW.agent_id IS DISTINCT FROM OLD.agent_id) THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END;
$$;

-- Every column chats__track_changes compares, and no other: heartbeat_at (runner bookkeeping
-- no client sees), dynamic_tools (below), the immutable columns and the derived ones (version,
-- status_changed_at) are not in the list.
CREATE OR REPLACE TRIGGER chats_500_track_changes
  BEFORE UPDATE OF status, archived, pin_order, updated_at, worker_id, started_at, workspace_id,
    build_id, agent_id, last_model_config_id, title, title_source, mode, plan_mode, client_type,
    api_key_id, last_read_message_id, context_aggregate_hash, context_dirty_since, context_error,
    mcp_server_ids, last_error, last_turn_summary, labels, context_dirty_resources
  ON chats
  FOR EACH ROW EXECUTE FUNCTION chats__track_changes();

-- A change of the client-declared tools moves version too. Apart, because they can be large:
-- only an UPDATE that assigns them reads them. (No code path of pgchatd changes them after
-- creation; a DBA might.)
CREATE OR REPLACE FUNCTION chats__track_tool_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chats_500_track_tool_changes
  BEFORE UPDATE OF dynamic_tools ON chats
  FOR EACH ROW
  WHEN (NEW.dynamic_tools IS DISTINCT FROM OLD.dynamic_tools)
  EXECUTE FUNCTION chats__track_tool_changes();

-- Change events for the owner's watch stream: one `created` per new chat. Statement-level with a
-- transition table, so a statement that writes many chats writes its events in one INSERT.
CREATE OR REPLACE FUNCTION chats__events_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_events_append(ARRAY(
    SELECT ROW(n.id, n.owner_id, 'created', n.version, NULL)::chat_event_row
    FROM new_rows n ORDER BY n.created_at, n.id));
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chats_900_events_on_insert
  AFTER INSERT ON chats REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chats__events_on_insert();

-- Change events for an update, one row per kind that applies (docs/api.md "Streams"):
--   archive / unarchive -> deleted / created (one per family member: the cascade updates each);
--   status -> status_change, plus action_required with the pending tool calls on entering
--   requires_action; title -> title_change; last_turn_summary -> summary_change;
--   context marked dirty -> context_dirty; anything else a client sees -> updated.
-- Row-level, for rows whose version moved (chats__track_changes): a heartbeat moves none, so the
-- batched heartbeat of thousands of running chats never enters this function. Not a
-- statement-level trigger joining the OLD and NEW transition tables: plpgsql caches that join's
-- plan from its first execution, and a nested loop planned for one row took 12 s for a
-- statement that changed 10,000 chats (a runner's shutdown); per row the cost stays linear.
-- WARNING: runner bookkeeping (worker_id, started_at) moves version but emits nothing, and so
-- does a change of the dynamic tools (not part of the Chat object; never read here, they can be
-- large).
-- IF statements, not one SELECT of UNION ALL branches filtered on NEW and OLD: plpgsql evaluates
-- these as simple expressions, planned once per session, while that query's plan depended on the
-- row's values, so it was planned again for every row (0.8-1.3 ms of planning per update against
-- 0.2 ms of execution: `BENCH_PG_STATEMENTS=1 npm run bench -- watch`).
CREATE OR REPLACE FUNCTION chats__events_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_events chat_event_row[] := '{}';
BEGIN
  -- In this order (one transaction's events of a chat are read in it).
  IF NEW.archived AND NOT OLD.archived THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'deleted'::chat_event_kind, NEW.version, NULL::jsonb)::chat_event_row;
  ELSIF OLD.archived AND NOT NEW.archived THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'created'::chat_event_kind, NEW.version, NULL::jsonb)::chat_event_row;
  END IF;
  IF NEW.status <> OLD.status THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'status_change'::chat_event_kind, NEW.version,
          jsonb_build_object('status', NEW.status, 'previous_status', OLD.status)
          || CASE WHEN NEW.status = 'error' THEN jsonb_build_object('error', NEW.last_error)
             ELSE '{}'::jsonb END)::chat_event_row;
  END IF;
  IF NEW.status = 'requires_action' AND OLD.status <> 'requires_action' THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'action_required'::chat_event_kind, NEW.version,
          jsonb_build_object('tool_calls', chat_events_tool_calls(NEW.id)))::chat_event_row;
  END IF;
  IF NEW.title <> OLD.title THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'title_change'::chat_event_kind, NEW.version, NULL::jsonb)::chat_event_row;
  END IF;
  IF NEW.last_turn_summary IS DISTINCT FROM OLD.last_turn_summary THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'summary_change'::chat_event_kind, NEW.version, NULL::jsonb)::chat_event_row;
  END IF;
  IF NEW.context_dirty_since IS NOT NULL AND OLD.context_dirty_since IS NULL THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'context_dirty'::chat_event_kind, NEW.version, NULL::jsonb)::chat_event_row;
  END IF;
  -- Only what no other kind explains: updated_at and last_error move with a status change, the
  -- dirty resources with context_dirty.
  IF NEW.archived = OLD.archived AND (
    (NEW.pin_order, NEW.labels, NEW.workspace_id, NEW.build_id, NEW.agent_id, NEW.mode,
     NEW.plan_mode, NEW.last_model_config_id, NEW.mcp_server_ids,
     NEW.last_read_message_id, NEW.context_aggregate_hash, NEW.context_error)
    IS DISTINCT FROM
    (OLD.pin_order, OLD.labels, OLD.workspace_id, OLD.build_id, OLD.agent_id, OLD.mode,
     OLD.plan_mode, OLD.last_model_config_id, OLD.mcp_server_ids,
     OLD.last_read_message_id, OLD.context_aggregate_hash, OLD.context_error)
    OR (NEW.context_dirty_since IS NULL AND OLD.context_dirty_since IS NOT NULL)
    OR (NEW.context_dirty_resources IS DISTINCT FROM OLD.context_dirty_resources
        AND NOT (NEW.context_dirty_since IS NOT NULL AND OLD.context_dirty_since IS NULL))
    OR (NEW.status = OLD.status
        AND (NEW.updated_at <> OLD.updated_at OR NEW.last_error IS DISTINCT FROM OLD.last_error))
  ) THEN
    v_events := v_events
      || ROW(NEW.id, NEW.owner_id, 'updated'::chat_event_kind, NEW.version, NULL::jsonb)::chat_event_row;
  END IF;
  PERFORM chat_events_append(v_events);
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chats_900_events_on_update
  AFTER UPDATE ON chats
  FOR EACH ROW
  WHEN (NEW.version IS DISTINCT FROM OLD.version AND chat_events_mode() <> 'off')
  EXECUTE FUNCTION chats__events_on_update();

-- A chat removed for good (a DBA's DELETE, or its owner deleted): `hard_deleted`, carrying the
-- identity fields, because the row is gone when the event is rendered.
CREATE OR REPLACE FUNCTION chats__events_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_events_append(ARRAY(
    SELECT ROW(o.id, o.owner_id, 'hard_deleted', o.version + 1,
      jsonb_build_object('organization_id', o.organization_id, 'parent_chat_id', o.parent_chat_id,
        'root_chat_id', o.root_chat_id, 'title', o.title))::chat_event_row
    FROM old_rows o ORDER BY o.id));
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chats_900_events_on_delete
  AFTER DELETE ON chats REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chats__events_on_delete();

-- Keeps chat_diff_statuses.chat_archived (migration 00032) equal to the chat's archived: the
-- refresher's index leaves archived chats' references out. An unarchived chat's reference is due
-- at once: the refresher skipped it while it was archived. Row-level, only when archived changes.
CREATE OR REPLACE FUNCTION chats__copy_archived() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE chat_diff_statuses
  SET chat_archived = NEW.archived,
    stale_at = CASE WHEN NEW.archived THEN stale_at
      ELSE least(stale_at, chat_clock_now() - interval '1 second') END
  WHERE chat_id = NEW.id;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chats_700_copy_archived
  AFTER UPDATE OF archived ON chats
  FOR EACH ROW
  WHEN (NEW.archived IS DISTINCT FROM OLD.archived)
  EXECUTE FUNCTION chats__copy_archived();

-- Archiving ends the chat's open workspace tool calls (docs/api.md "Workspace tools"): the agent
-- is told to stop them at once, not when the runner notices. Their results are stored when a
-- later turn starts (an archived chat takes no messages). Row-level, only when a chat is archived.
CREATE OR REPLACE FUNCTION chats__cancel_tool_calls() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_tool_calls_cancel(NEW.id, 'canceled: the chat was archived');
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chats_700_cancel_tool_calls
  AFTER UPDATE OF archived ON chats
  FOR EACH ROW
  WHEN (NEW.archived AND NOT OLD.archived)
  EXECUTE FUNCTION chats__cancel_tool_calls();

-- Repair, on every migrate: copies the trigger above missed. Migration 00032 filled the copies
-- without locking chats, so a server of the previous version may have archived or unarchived
-- chats before this trigger existed. The CREATE OR REPLACE TRIGGER above holds chats in SHARE ROW
-- EXCLUSIVE mode until the routines commit: no archive runs between this statement and the
-- trigger taking over. Reads every diff status once (an index lookup into chats each); it writes
-- only copies that are wrong, so normally nothing.
UPDATE chat_diff_statuses d
SET chat_archived = c.archived,
  stale_at = CASE WHEN c.archived THEN d.stale_at
    ELSE least(d.stale_at, chat_clock_now() - interval '1 second') END
FROM chats c
WHERE c.id = d.chat_id AND d.chat_archived <> c.archived;

-- Tells the runner holding a chat that its turn must stop: the chat left `running` (an interrupt
-- made it waiting) or was archived while the lease stayed, or a new turn was admitted (an edit:
-- chat_admit_message released the lease and set pending). The holder's own transitions release
-- the lease and leave `running` for another status than pending in the same UPDATE, so they
-- notify nobody; a release back to pending by recovery does (a slow holder must stop too), one
-- at a runner's own shutdown does not (pgchatd.releasing_own_leases: it stops them itself). Payload: the chat id; every runner listens, the holder acts. Row-level with
-- WHEN: other updates never enter plpgsql. Its heartbeat is the fallback when a notification
-- is missed.
CREATE OR REPLACE FUNCTION chats__notify_runner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('chat_runner', NEW.id::text);
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chats_900_notify_runner
  AFTER UPDATE ON chats
  FOR EACH ROW
  WHEN (
    OLD.worker_id IS NOT NULL AND (
      (NEW.worker_id IS NOT DISTINCT FROM OLD.worker_id
       AND NEW.started_at IS NOT DISTINCT FROM OLD.started_at
       AND ((OLD.status = 'running' AND NEW.status <> 'running') OR (NEW.archived AND NOT OLD.archived)))
      OR (NEW.worker_id IS NULL AND NEW.status = 'pending'
          AND current_setting('pgchatd.releasing_own_leases', true) IS DISTINCT FROM 'on')
    )
  )
  EXECUTE FUNCTION chats__notify_runner();

-- Wakes one runner: a chat became claimable (pending and not archived: created, a message
-- admitted, tool results in, unarchived, a lease released). The runner chat_runner_choose picks,
-- addressed by the payload (its id), in either events mode: none when it is this session's own
-- runner, which its process wakes after the commit; none when no runner has a free slot. With no
-- runner registered at all (only runners of the previous release, which wake on any payload) the
-- old broadcast, in trigger mode. Identical payloads in one transaction collapse into one
-- notification. Row-level with WHEN: other inserts and updates never enter plpgsql.
CREATE OR REPLACE FUNCTION chats__notify_pending() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_choice record;
BEGIN
  SELECT * INTO v_choice FROM chat_runner_choose();
  IF v_choice.runner_id IS NOT NULL THEN
    IF NOT v_choice.is_local THEN
      PERFORM pg_notify('chat_pending', v_choice.runner_id::text);
    END IF;
  ELSIF chat_events_mode() <> 'batched' AND NOT EXISTS (SELECT 1 FROM chat_runners) THEN
    PERFORM pg_notify('chat_pending', '');
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chats_900_notify_pending_on_insert
  AFTER INSERT ON chats
  FOR EACH ROW
  WHEN (NEW.status = 'pending' AND NOT NEW.archived)
  EXECUTE FUNCTION chats__notify_pending();

CREATE OR REPLACE TRIGGER chats_900_notify_pending_on_update
  AFTER UPDATE ON chats
  FOR EACH ROW
  WHEN (NEW.status = 'pending' AND NOT NEW.archived AND (OLD.status <> 'pending' OR OLD.archived))
  EXECUTE FUNCTION chats__notify_pending();
