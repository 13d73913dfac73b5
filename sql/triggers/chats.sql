-- Triggers on chats. Names: chats_<nnn>_<purpose>, fired in name order
-- (100 checks, 500 derived writes, 900 change events).

-- A child's family is derived, never trusted from the caller: root_chat_id is the parent's root
-- (or the parent), the parent belongs to the same owner, and an archived parent takes no children.
CREATE OR REPLACE FUNCTION chats__check_family() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_parent chats;
BEGIN
  IF NEW.parent_chat_id IS NULL THEN
    NEW.root_chat_id := NULL;
    RETURN NEW;
  END IF;
  SELECT * INTO v_parent FROM chats WHERE id = NEW.parent_chat_id;
  IF NOT FOUND OR v_parent.owner_id <> NEW.owner_id THEN
    RAISE EXCEPTION 'Parent chat not found.' USING ERRCODE = 'PC400';
  END IF;
  IF v_parent.archived THEN
    RAISE EXCEPTION 'Chat is archived.' USING ERRCODE = 'PC400', DETAIL = 'The parent chat is archived.';
  END IF;
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

CREATE OR REPLACE TRIGGER chats_100_check_immutable
  BEFORE UPDATE ON chats
  FOR EACH ROW EXECUTE FUNCTION chats__check_immutable();

-- version moves on every change of the row. updated_at moves only for the changes API.md lists:
-- status, archive state, pin position, labels and workspace binding (new user messages move it
-- from the chat_messages trigger). Title, summary, plan_mode, model, context marking and the read
-- cursor leave it alone. WARNING: an explicit SET updated_at is kept; only chat_messages uses it.
CREATE OR REPLACE FUNCTION chats__track_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW IS NOT DISTINCT FROM OLD THEN
    RETURN NEW;
  END IF;
  NEW.version := OLD.version + 1;
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

CREATE OR REPLACE TRIGGER chats_500_track_changes
  BEFORE UPDATE ON chats
  FOR EACH ROW EXECUTE FUNCTION chats__track_changes();
