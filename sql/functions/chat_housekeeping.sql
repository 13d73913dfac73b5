-- Housekeeping (docs/api.md "Housekeeping", docs/sql.md "Housekeeping"): the deployment's
-- retention and auto-archive settings. Re-applied on every migrate (CREATE OR REPLACE); this file
-- is the one home of these bodies.

-- PUT /config/retention: archived chats older than this many days are deleted (0 keeps them
-- forever). Audited with the old and new value.
CREATE OR REPLACE FUNCTION chat_housekeeping_set_retention(p_actor_id uuid, p_days integer)
RETURNS chat_housekeeping_config
LANGUAGE plpgsql AS $$
DECLARE
  v_old chat_housekeeping_config;
  v_new chat_housekeeping_config;
BEGIN
  SELECT * INTO v_old FROM chat_housekeeping_config FOR UPDATE;
  UPDATE chat_housekeeping_config SET retention_days = p_days, updated_at = now()
  RETURNING * INTO v_new;
  INSERT INTO audit_logs (actor_user_id, action, detail)
  VALUES (p_actor_id, 'retention_config',
    jsonb_build_object('old', v_old.retention_days, 'new', p_days));
  RETURN v_new;
END;
$$;

-- PUT /config/auto-archive: unpinned roots without activity for this many UTC days are archived
-- (0 turns it off). Audited with the old and new value.
CREATE OR REPLACE FUNCTION chat_housekeeping_set_auto_archive(p_actor_id uuid, p_days integer)
RETURNS chat_housekeeping_config
LANGUAGE plpgsql AS $$
DECLARE
  v_old chat_housekeeping_config;
  v_new chat_housekeeping_config;
BEGIN
  SELECT * INTO v_old FROM chat_housekeeping_config FOR UPDATE;
  UPDATE chat_housekeeping_config SET auto_archive_days = p_days, updated_at = now()
  RETURNING * INTO v_new;
  INSERT INTO audit_logs (actor_user_id, action, detail)
  VALUES (p_actor_id, 'auto_archive_config',
    jsonb_build_object('old', v_old.auto_archive_days, 'new', p_days));
  RETURN v_new;
END;
$$;
