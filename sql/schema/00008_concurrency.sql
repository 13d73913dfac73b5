-- Rules that hold under any interleaving: the global lock order (sql/functions/chats.sql),
-- recovery one chat at a time, a new turn releasing the previous run's lease, dirty marking that
-- is recomputed by every push, and checks that do not read large columns on every update.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- Routines whose signature changed or that were replaced: one home per routine, so the old ones go.
-- chat_run_recover is now chat_run_recover_chat (one chat per call, each its own transaction).
DROP FUNCTION IF EXISTS chat_run_recover(interval, interval);
-- chat_admit_queued now takes the queued message's id and admits only what its DELETE removed.
DROP FUNCTION IF EXISTS chat_admit_queued(chats, chat_queued_messages);
-- chat_bind_workspace now binds the build and agent its caller resolved and locked for.
DROP FUNCTION IF EXISTS chat_bind_workspace(uuid, uuid);

-- A CHECK is evaluated on every UPDATE of a row, so this one read the whole (possibly large,
-- compressed) dynamic tools on every heartbeat. The trigger chats_100_check_dynamic_tools checks
-- them, and their size, only when they are assigned.
ALTER TABLE chats DROP CONSTRAINT chats_dynamic_tools_array;

-- A push that restores a chat's pinned content marks it clean again, audited as context_clean.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_action;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_action CHECK (action IN (
  'context_push', 'context_pin', 'context_hydrate', 'context_dirty', 'context_clean',
  'chat_context_add', 'chat_context_clear', 'chat_archive', 'chat_unarchive'
));

-- What the earlier rules could leave behind, repaired once:
-- a pending chat still leased to a run that an edit superseded (that run now finds its lease gone);
UPDATE chats SET worker_id = NULL, heartbeat_at = NULL WHERE status = 'pending' AND worker_id IS NOT NULL;
-- an unarchived chat under an archived parent (a child created while its family was archived),
-- archived like the rest of its family, level by level.
DO $$
BEGIN
  LOOP
    UPDATE chats c SET archived = true, pin_order = 0
    FROM chats p
    WHERE c.parent_chat_id = p.id AND p.archived AND NOT c.archived;
    EXIT WHEN NOT FOUND;
  END LOOP;
END $$;
