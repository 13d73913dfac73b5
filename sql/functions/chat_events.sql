-- Change events: the NOTIFY mode, the one writer of the log (chat_events_append, which the
-- *_900_* triggers in sql/triggers/ call), the read horizon and pruning.

-- How this session publishes events, from the session setting pgchatd.events:
--   trigger (default; also any session that does not set it, such as psql): the triggers write
--           chat_events and NOTIFY chat_events in the same transaction;
--   batched: the triggers write chat_events only; the server sends one NOTIFY per short interval
--           after its own commits (src/watch/notifier.ts);
--   off:     nothing is written (benchmark baseline only: watch streams see nothing).
CREATE OR REPLACE FUNCTION chat_events_mode() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT COALESCE(NULLIF(current_setting('pgchatd.events', true), ''), 'trigger');
$$;

-- Who listens for change events and streamed parts (docs/sql.md "Notifications nobody hears").
-- PostgreSQL hands every NOTIFY to every listening backend of the database, whatever its channel
-- (15 to 18), and each runs a transaction to read it: with ten processes, each batched wake-up and
-- each streamed part cost ten transactions even when no stream was open anywhere. So a connection
-- that LISTENs chat_events or chat_message_parts first holds every slot of this lock shared, for
-- its session (chat_listener_announce, from src/db/listen.ts), and a publisher NOTIFYs only when it
-- cannot take its own slot exclusively (chat_listeners_exist). A publisher that took its slot
-- committed before any listener could announce (an announcement finds the slot taken and is made
-- again later), so the listener's read after its announcement sees what it wrote; a publisher that found its slot held NOTIFYs, and that
-- notification reaches the listener unless it commits before the LISTEN does, when the same read
-- sees its writes. 16 slots, by backend pid: concurrent publishers rarely share one, and one that
-- does only sends a NOTIFY it could have spared. Nobody waits for these locks, so they take no
-- place in the lock order.
-- A listener's own session takes its slot whatever it holds itself (a lock never conflicts with
-- its own holder): its own commits wake it in-process, not through NOTIFY.
CREATE OR REPLACE FUNCTION chat_listeners_exist() RETURNS boolean
LANGUAGE sql VOLATILE AS $$
  SELECT NOT pg_try_advisory_xact_lock(hashtext('pgchatd.chat_listeners'), pg_backend_pid() % 16);
$$;

-- batched mode's wake-up (NotifyChatEvents), when someone else listens: whether it was sent.
CREATE OR REPLACE FUNCTION chat_events_notify_batch() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF chat_listeners_exist() THEN
    PERFORM pg_notify('chat_events', 'batch');
    RETURN true;
  END IF;
  RETURN false;
END;
$$;

-- Before this session's first LISTEN of chat_events or chat_message_parts: every slot shared,
-- until chat_listener_withdraw or the session ends; true when taken. It never joins a lock
-- queue: it takes the slots in order, each with a try, and a slot that a publisher holds (for its
-- commit) is tried again every millisecond, for 200 ms in all; then it gives back what it took
-- and returns false, and the caller LISTENs without it and tries again later (src/db/listen.ts).
-- So the listener's connection, which carries its other LISTENs and NOTIFYs too, waits 200 ms at
-- most, even for a stuck publisher, and a busy slot does not starve it: once it holds a slot no
-- publisher takes it, so it needs each slot free for one instant only. All or nothing, even when
-- it fails midway (a cancel): session locks outlive the statement that took them, so it gives
-- every slot back before it raises. Once per session: the caller announces only while it has not
-- (a second call's failure would give back the first's slots too).
CREATE OR REPLACE FUNCTION chat_listener_announce() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_deadline timestamptz := clock_timestamp() + interval '200 milliseconds';
BEGIN
  FOR s IN 0..15 LOOP
    WHILE NOT pg_try_advisory_lock_shared(hashtext('pgchatd.chat_listeners'), s) LOOP
      IF clock_timestamp() >= v_deadline THEN
        PERFORM chat_listener_withdraw();
        RETURN false;
      END IF;
      PERFORM pg_sleep(0.001);
    END LOOP;
  END LOOP;
  RETURN true;
EXCEPTION WHEN OTHERS OR query_canceled THEN
  PERFORM chat_listener_withdraw();
  RAISE;
END;
$$;

-- After this session's last UNLISTEN of them, and after a failed announcement: every
-- session-level advisory lock of the session goes, however many times a slot was taken (an
-- unlock per slot would leave a slot taken twice held, and warn in the server log for a slot not
-- held). So only for a connection that holds no other session-level advisory lock: the LISTEN
-- connection (src/db/listen.ts) holds none.
CREATE OR REPLACE FUNCTION chat_listener_withdraw() RETURNS void
LANGUAGE sql AS $$
  SELECT pg_advisory_unlock_all();
$$;

-- Wakes the tailers after commit. WARNING: the payload is the transaction id, so every call in
-- one transaction is the same notification and Postgres delivers it once; it carries no event
-- data (readers read chat_events), so it stays a few bytes whatever the chat holds.
CREATE OR REPLACE FUNCTION chat_events_notify() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF chat_events_mode() = 'trigger' THEN
    PERFORM pg_notify('chat_events', pg_current_xact_id()::text);
  END IF;
END;
$$;

-- The one writer of chat_events: appends the events in the order given and wakes the tailers
-- (chat_events_notify). The *_900_* triggers compute their events and pass them here; they fire
-- only while chat_events_mode() is not 'off' (their WHEN clause), so in that mode nothing is even
-- computed.
-- One event (most writes: a title, a status) goes in by INSERT ... VALUES, which plpgsql plans
-- once per session; the INSERT ... SELECT FROM unnest(p_events) that several need has a plan
-- depending on the array, so plpgsql plans it again at every call (0.2-0.3 ms, more than it takes
-- to run: `BENCH_PG_STATEMENTS=1 npm run bench -- watch`), which only a cascade or a batch pays.
CREATE OR REPLACE FUNCTION chat_events_append(p_events chat_event_row[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_event chat_event_row;
BEGIN
  IF cardinality(p_events) = 1 AND array_ndims(p_events) = 1 THEN
    -- Its own lower bound: an array written as '[0:0]={...}' does not start at 1.
    v_event := p_events[array_lower(p_events, 1)];
    INSERT INTO chat_events (chat_id, owner_id, kind, chat_version, payload)
    VALUES (v_event.chat_id, v_event.owner_id, v_event.kind, v_event.chat_version, v_event.payload);
  ELSIF cardinality(p_events) > 1 THEN
    INSERT INTO chat_events (chat_id, owner_id, kind, chat_version, payload)
    SELECT e.chat_id, e.owner_id, e.kind, e.chat_version, e.payload
    FROM unnest(p_events) WITH ORDINALITY AS e(chat_id, owner_id, kind, chat_version, payload, n)
    ORDER BY e.n;
  ELSE
    RETURN;
  END IF;
  PERFORM chat_events_notify();
END;
$$;

-- The read horizon: events with a smaller xid are all committed (or rolled back) and no
-- transaction can add one any more, so a reader may hand them out in cursor order and never see
-- one appear behind its position later. It is the smallest xid still running IN THIS DATABASE,
-- or the snapshot's xmax when none is. A transaction of another database can never write this
-- database's chat_events, so it does not hold the horizon back: the snapshot's own xmin is
-- cluster-wide, and any open write transaction anywhere on the server would freeze every stream
-- (docs/operations.md "Long transactions"). An xid whose backend cannot be found (it just ended,
-- or a prepared transaction) holds the horizon, as it would have.
-- Uses the caller's snapshot (STABLE: no snapshot of its own): the rows a query reads below the
-- horizon are the ones it can see. backend_xid is a 32-bit xid: running xids lie within 2^31 of each other, so their low
-- 32 bits identify them.
CREATE OR REPLACE FUNCTION chat_events_horizon() RETURNS xid8
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_horizon xid8;
BEGIN
  -- plpgsql, not sql: its plan is cached, while a SQL function that cannot be inlined is planned
  -- again at every call (~1 ms of catalog reads here).
  SELECT COALESCE(min(r.xid), pg_snapshot_xmax(pg_current_snapshot())) INTO v_horizon
  FROM pg_snapshot_xip(pg_current_snapshot()) AS r(xid)
  WHERE NOT EXISTS (
    SELECT 1
    FROM pg_stat_get_activity(NULL) a
    WHERE a.backend_xid::text::bigint = (r.xid::text::numeric % 4294967296)::bigint
      AND a.datid <> (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
  );
  RETURN v_horizon;
END;
$$;

-- Deletes the oldest events: the longest prefix, in cursor order, of events below the read
-- horizon as it was sampled at or before p_before, at most p_limit rows per call (short
-- transactions; call again while it returns p_limit). Every such event committed before that
-- sample, so it has been readable for the whole retention: tailers read it long ago. (Not by
-- created_at, the writing transaction's start: an event of a transaction open longer than the
-- retention would be deleted as it commits, before any tailer read it.) Each call samples the
-- horizon for later calls and drops the samples no call needs any more. Moves
-- chat_event_horizon to the last deleted cursor, so a stream resuming from below it is told to
-- resync instead of silently missing events.
CREATE OR REPLACE FUNCTION chat_events_prune(p_before timestamptz, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_sampled_at timestamptz;
  v_safe xid8;
  v_xid xid8;
  v_id bigint;
  v_count integer;
BEGIN
  -- Replicas run this job on their own schedule; one pass at a time is enough.
  IF NOT pg_try_advisory_xact_lock(hashtext('chat_events_prune')) THEN
    RETURN 0;
  END IF;
  INSERT INTO chat_event_horizon_samples (sampled_at, horizon)
  VALUES (now(), chat_events_horizon())
  ON CONFLICT (sampled_at) DO NOTHING;
  SELECT sampled_at, horizon INTO v_sampled_at, v_safe
  FROM chat_event_horizon_samples
  WHERE sampled_at <= p_before
  ORDER BY sampled_at DESC
  LIMIT 1;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  DELETE FROM chat_event_horizon_samples WHERE sampled_at < v_sampled_at;
  SELECT e.xid, e.id INTO v_xid, v_id
  FROM (
    SELECT xid, id FROM chat_events
    WHERE xid < v_safe
    ORDER BY xid, id
    LIMIT p_limit
  ) e
  ORDER BY e.xid DESC, e.id DESC
  LIMIT 1;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  DELETE FROM chat_events WHERE (xid, id) <= (v_xid, v_id);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  UPDATE chat_event_horizon SET pruned_xid = v_xid, pruned_id = v_id
  WHERE (pruned_xid, pruned_id) < (v_xid, v_id);
  RETURN v_count;
END;
$$;

-- Trigger function for tables whose rows hang off a chat and whose every change means "this
-- chat's <kind> changed" (chat_queued_messages: queue_update; chat_diff_statuses:
-- diff_status_change): one event of kind TG_ARGV[0] per chat the statement touched. The content
-- is read when the event is rendered. Rows of a chat being deleted find no chat and emit nothing
-- (the chat's own hard_deleted covers it). Statement-level, with transition tables new_rows
-- (INSERT, UPDATE) or old_rows (DELETE).
CREATE OR REPLACE FUNCTION chat_events__emit_per_chat() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM chat_events_append(ARRAY(
      SELECT ROW(c.id, c.owner_id, TG_ARGV[0]::chat_event_kind, c.version, NULL)::chat_event_row
      FROM chats c WHERE c.id IN (SELECT chat_id FROM old_rows) ORDER BY c.id));
  ELSE
    PERFORM chat_events_append(ARRAY(
      SELECT ROW(c.id, c.owner_id, TG_ARGV[0]::chat_event_kind, c.version, NULL)::chat_event_row
      FROM chats c WHERE c.id IN (SELECT chat_id FROM new_rows) ORDER BY c.id));
  END IF;
  RETURN NULL;
END;
$$;
