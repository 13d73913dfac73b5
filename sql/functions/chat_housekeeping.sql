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
  -- A new threshold applies at the next run, not the next UTC day.
  UPDATE chat_housekeeping_config
  SET auto_archive_days = p_days, auto_archive_done_on = NULL, updated_at = now()
  RETURNING * INTO v_new;
  INSERT INTO audit_logs (actor_user_id, action, detail)
  VALUES (p_actor_id, 'auto_archive_config',
    jsonb_build_object('old', v_old.auto_archive_days, 'new', p_days));
  RETURN v_new;
END;
$$;

-- Auto-archive (docs/api.md "Housekeeping"). Eligibility is by UTC date, not timestamp: a root
-- whose last activity fell on a UTC date before today − auto_archive_days. Every chat idle since
-- the same date becomes eligible at the same UTC midnight, so the first run after midnight
-- archives them together and an owner gets one digest a day (unless the batch limit splits the
-- work). NULL when auto-archive is off, or already went through today's eligible roots
-- (chat_auto_archive_mark_done): the runs after it that day look for nothing.
CREATE OR REPLACE FUNCTION chat_auto_archive_cutoff() RETURNS date
LANGUAGE sql STABLE AS $$
  SELECT (chat_clock_now() AT TIME ZONE 'UTC')::date - auto_archive_days
  FROM chat_housekeeping_config
  WHERE auto_archive_days > 0
    AND (auto_archive_done_on IS NULL
      OR auto_archive_done_on < (chat_clock_now() AT TIME ZONE 'UTC')::date);
$$;

-- A run that took fewer candidates than its batch, for cutoff p_cutoff, went through every
-- eligible root: nothing more becomes eligible before the next UTC midnight. Recorded only while
-- p_cutoff is still today's cutoff: a run that crossed midnight, or read the candidates before the
-- threshold changed, did not do today's work.
CREATE OR REPLACE FUNCTION chat_auto_archive_mark_done(p_cutoff date) RETURNS void
LANGUAGE sql AS $$
  UPDATE chat_housekeeping_config
  SET auto_archive_done_on = (chat_clock_now() AT TIME ZONE 'UTC')::date
  WHERE auto_archive_days > 0
    AND (chat_clock_now() AT TIME ZONE 'UTC')::date - auto_archive_days = p_cutoff;
$$;

-- A family's last activity: its newest message (any chat of the family, by id: ids grow with
-- time), or the newest updated_at of its chats when later (creation, an unarchive, a pin, a label,
-- a status change, of the root or of a subagent: a chat a user touched is not idle). Never
-- earlier than the root's updated_at, which chats_auto_archive_idx orders by.
CREATE OR REPLACE FUNCTION chat_family_last_activity(p_root_id uuid) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT greatest(
    (SELECT max(f.updated_at) FROM chats f WHERE f.id = p_root_id OR f.root_chat_id = p_root_id),
    (SELECT max(n.created_at)
     FROM chats f
     CROSS JOIN LATERAL (
       SELECT m.created_at FROM chat_messages m WHERE m.chat_id = f.id ORDER BY m.id DESC LIMIT 1
     ) n
     WHERE f.id = p_root_id OR f.root_chat_id = p_root_id));
$$;

-- The roots auto-archive would take now, least recently updated first, at most p_limit:
-- unarchived, unpinned, idle since before the cutoff date. Activity is never before updated_at,
-- so chats_auto_archive_idx yields only roots that may qualify, in an order that lets the scan
-- stop at p_limit; each one's family activity is checked on the way. Read without locks;
-- chat_auto_archive_owner checks again under its locks.
CREATE OR REPLACE FUNCTION chat_auto_archive_candidates(p_limit integer)
RETURNS TABLE (chat_id uuid, owner_id uuid)
LANGUAGE sql STABLE AS $$
  SELECT c.id, c.owner_id
  FROM chats c
  WHERE c.parent_chat_id IS NULL AND NOT c.archived AND c.pin_order = 0
    -- Scalar subqueries: computed once, so the bound is an index condition the scan stops at.
    AND c.updated_at < (SELECT d::timestamp AT TIME ZONE 'UTC' FROM chat_auto_archive_cutoff() AS d)
    AND (chat_family_last_activity(c.id) AT TIME ZONE 'UTC')::date < (SELECT chat_auto_archive_cutoff())
  ORDER BY c.updated_at, c.id
  LIMIT p_limit;
$$;

-- Archives an owner's candidate roots (p_root_ids, from chat_auto_archive_candidates) with their
-- families, and writes the owner's digest, in the caller's transaction. The locks are taken first,
-- all in the global order (docs/sql.md "Lock order"): the owner's pin lock, the families' locks in
-- lock-key order, then every row of every subtree in one id-ordered statement, so it never waits
-- out of order with a user's archive, pin or a context push. Each
-- root is then checked again (a message, a pin, an unarchive or an archive that committed since
-- the candidates were read wins) and archived, with one audit entry (chat_auto_archive, by the
-- server) per root. Returns how many roots it archived; the digest lists their titles.
CREATE OR REPLACE FUNCTION chat_auto_archive_owner(p_owner_id uuid, p_root_ids uuid[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_cutoff date := chat_auto_archive_cutoff();
  v_roots uuid[];
  v_root uuid;
  v_chat chats;
  v_archived integer;
  v_titles text[] := '{}';
BEGIN
  IF v_cutoff IS NULL THEN
    RETURN 0;
  END IF;
  -- Only the owner's roots: families and owners never change, so this unlocked read holds.
  v_roots := ARRAY(
    SELECT c.id FROM chats c
    WHERE c.id = ANY (p_root_ids) AND c.owner_id = p_owner_id AND c.parent_chat_id IS NULL
    ORDER BY c.id);
  IF cardinality(v_roots) = 0 THEN
    RETURN 0;
  END IF;
  -- Pins change only under this lock: a root unpinned now stays unpinned, and an unpinned root's
  -- archive renumbers no pins, so the owner's pinned chats need no row lock.
  PERFORM chat_lock_pins(p_owner_id);
  -- In the order of the lock keys (chat_lock_family hashes the root id): two callers whose roots
  -- share a key can never take them in opposite orders.
  FOR v_root IN SELECT r FROM unnest(v_roots) AS r ORDER BY hashtext(r::text), r LOOP
    PERFORM chat_lock_family(v_root, true);
  END LOOP;
  PERFORM chat_lock_rows(ARRAY(SELECT unnest(chat_subtree_ids(r)) FROM unnest(v_roots) AS r));
  FOREACH v_root IN ARRAY v_roots LOOP
    SELECT * INTO v_chat FROM chats WHERE id = v_root;
    CONTINUE WHEN NOT FOUND OR v_chat.archived OR v_chat.pin_order > 0
      OR (chat_family_last_activity(v_root) AT TIME ZONE 'UTC')::date >= v_cutoff;
    SELECT count(*) INTO v_archived FROM chat_archive(v_root, true);
    INSERT INTO audit_logs (action, chat_id, detail)
    VALUES ('chat_auto_archive', v_root, jsonb_build_object(
      'archived_chats', v_archived, 'cutoff_date', v_cutoff));
    v_titles := v_titles || v_chat.title;
  END LOOP;
  IF cardinality(v_titles) > 0 THEN
    PERFORM chat_auto_archive_notify(p_owner_id, v_titles);
  END IF;
  RETURN cardinality(v_titles);
END;
$$;

-- The digest of one auto-archive run for one owner: a "Chats auto-archived" notification listing
-- up to 25 titles and "and N more", saying what happens to archived chats under the current
-- retention. Returns the notification's id.
CREATE OR REPLACE FUNCTION chat_auto_archive_notify(p_owner_id uuid, p_titles text[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_config chat_housekeeping_config;
  v_total integer := cardinality(p_titles);
  v_body text;
  v_id bigint;
BEGIN
  SELECT * INTO v_config FROM chat_housekeeping_config;
  v_body := format('%s %s without activity for %s %s %s archived:',
      v_total, CASE WHEN v_total = 1 THEN 'chat' ELSE 'chats' END,
      v_config.auto_archive_days, CASE WHEN v_config.auto_archive_days = 1 THEN 'day' ELSE 'days' END,
      CASE WHEN v_total = 1 THEN 'was' ELSE 'were' END)
    || E'\n' || array_to_string(ARRAY(
      SELECT '- ' || CASE WHEN btrim(t) = '' THEN '(untitled)'
        ELSE regexp_replace(btrim(t), '\s+', ' ', 'g') END
      FROM unnest(p_titles[1:25]) AS t), E'\n')
    || CASE WHEN v_total > 25 THEN format(E'\nand %s more', v_total - 25) ELSE '' END
    || E'\n\n'
    || CASE WHEN v_config.retention_days = 0
      THEN 'Archived chats are kept forever; unarchive one to continue it.'
      ELSE format('Archived chats are deleted %s %s after they were archived; unarchive one to keep it.',
        v_config.retention_days, CASE WHEN v_config.retention_days = 1 THEN 'day' ELSE 'days' END)
    END;
  INSERT INTO notifications (user_id, kind, title, body, created_at)
  VALUES (p_owner_id, 'chats_auto_archived', 'Chats auto-archived', v_body, chat_clock_now())
  RETURNING id INTO v_id;
  RETURN v_id;
END;
$$;

-- Retention (docs/api.md "Housekeeping"): archived chats whose updated_at (an archive moves it)
-- is older than retention_days are deleted. NULL when retention is off (0: kept forever).
CREATE OR REPLACE FUNCTION chat_retention_cutoff() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT chat_clock_now() - make_interval(days => retention_days)
  FROM chat_housekeeping_config
  WHERE retention_days > 0;
$$;

-- The archived chats retention would delete now, least recently updated first, at most p_limit
-- (chats_archived_updated_at_idx). Read without locks; chat_retention_purge checks again.
CREATE OR REPLACE FUNCTION chat_retention_candidates(p_limit integer)
RETURNS TABLE (chat_id uuid)
LANGUAGE sql STABLE AS $$
  SELECT c.id
  FROM chats c
  -- A scalar subquery: computed once, so the bound is an index condition the scan stops at.
  WHERE c.archived AND c.updated_at < (SELECT chat_retention_cutoff())
  ORDER BY c.updated_at, c.id
  LIMIT p_limit;
$$;

-- Deletes archived chats (p_chat_ids, from chat_retention_candidates) and their subtrees for good
-- (messages, queue, links, statuses cascade; chats_900_events_on_delete emits hard_deleted for
-- each), those still archived and older than the retention once locked. Many chats per statement,
-- because each transaction's commit, not the delete, is most of the cost of a purge. The locks are
-- taken first, as chat_auto_archive_owner takes them (docs/sql.md "Lock order"): the families' locks
-- in lock-key order, then every row of every subtree in one id-ordered statement; so an unarchive
-- racing it (the family lock, then its rows) waits or wins, never deadlocks. Returns how many chats
-- were deleted.
DROP FUNCTION IF EXISTS chat_retention_purge(uuid);
CREATE OR REPLACE FUNCTION chat_retention_purge(p_chat_ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_cutoff timestamptz := chat_retention_cutoff();
  v_root uuid;
  v_ids uuid[];
  v_deleted integer;
BEGIN
  IF v_cutoff IS NULL OR cardinality(p_chat_ids) IS NOT DISTINCT FROM 0 THEN
    RETURN 0;
  END IF;
  -- A chat's root never changes, so this unlocked read names the right families.
  FOR v_root IN
    SELECT f.r FROM (
      SELECT DISTINCT COALESCE(c.root_chat_id, c.id) AS r FROM chats c WHERE c.id = ANY (p_chat_ids)
    ) f
    ORDER BY hashtext(f.r::text), f.r
  LOOP
    PERFORM chat_lock_family(v_root, true);
  END LOOP;
  PERFORM chat_lock_rows(ARRAY(SELECT unnest(chat_subtree_ids(i)) FROM unnest(p_chat_ids) AS i));
  v_ids := ARRAY(
    SELECT c.id FROM chats c
    WHERE c.id = ANY (p_chat_ids) AND c.archived AND c.updated_at < v_cutoff);
  -- Every chat of a deleted subtree goes (archived with its ancestor), counted once.
  SELECT count(DISTINCT s) INTO v_deleted FROM unnest(v_ids) AS i, unnest(chat_subtree_ids(i)) AS s;
  DELETE FROM chats WHERE id = ANY (v_ids);
  RETURN v_deleted;
END;
$$;

-- Files older than the retention that no chat links to (any more), oldest first, at most
-- p_limit; a file a message is linking right now is skipped. The candidates are locked first,
-- then deleted in a second statement whose fresh snapshot sees a link committed while the first
-- scanned (a link only takes a share lock on the file, which the first statement's lock does not
-- re-check); a link arriving after the lock waits for it, then finds the file gone
-- (chat_link_files: PC400). Returns how many were deleted.
CREATE OR REPLACE FUNCTION chat_retention_purge_files(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_ids uuid[];
  v_deleted integer;
BEGIN
  v_ids := ARRAY(
    SELECT f.id
    FROM chat_files f
    WHERE f.created_at < (SELECT chat_retention_cutoff())
      AND NOT EXISTS (SELECT 1 FROM chat_file_links l WHERE l.file_id = f.id)
    ORDER BY f.created_at
    LIMIT p_limit
    FOR UPDATE OF f SKIP LOCKED);
  DELETE FROM chat_files f
  WHERE f.id = ANY (v_ids)
    AND NOT EXISTS (SELECT 1 FROM chat_file_links l WHERE l.file_id = f.id);
  GET DIAGNOSTICS v_deleted = ROW_COUNT;
  RETURN v_deleted;
END;
$$;

-- Rows of an append-only log older than p_days, deleted from its oldest end: the first p_limit
-- rows by id (ids grow with time), those among them older than the cutoff. Returns how many; fewer
-- than p_limit means the old end is done. audit_logs and notifications each have a retention of
-- their own (docs/operations.md "Housekeeping").
CREATE OR REPLACE FUNCTION chat_retention_purge_audit_logs(p_days integer, p_limit integer)
RETURNS integer
LANGUAGE sql AS $$
  WITH deleted AS (
    DELETE FROM audit_logs a
    WHERE a.id IN (
      SELECT x.id FROM (SELECT id, time FROM audit_logs ORDER BY id LIMIT p_limit) x
      WHERE x.time < chat_clock_now() - make_interval(days => p_days))
    RETURNING 1
  )
  SELECT count(*)::integer FROM deleted;
$$;

CREATE OR REPLACE FUNCTION chat_retention_purge_notifications(p_days integer, p_limit integer)
RETURNS integer
LANGUAGE sql AS $$
  WITH deleted AS (
    DELETE FROM notifications n
    WHERE n.id IN (
      SELECT x.id FROM (SELECT id, created_at FROM notifications ORDER BY id LIMIT p_limit) x
      WHERE x.created_at < chat_clock_now() - make_interval(days => p_days))
    RETURNING 1
  )
  SELECT count(*)::integer FROM deleted;
$$;
