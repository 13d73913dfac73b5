-- Triggers on chat_messages. Names: chat_messages_<nnn>_<purpose>.

-- Archived chats are read-only: no message of any kind lands in one. The row lock (the same one
-- an archive takes to update the chat) orders this insert against a concurrent archive: either
-- the archive waits for this transaction, or this insert sees the chat archived. The one
-- exception is the cost of a turn the archive ended (chat_run_keep_usage): stored deleted and
-- model-only, it is in no history.
CREATE OR REPLACE FUNCTION chat_messages__check_chat_writable() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_archived boolean;
BEGIN
  SELECT archived INTO v_archived FROM chats WHERE id = NEW.chat_id FOR NO KEY UPDATE;
  IF v_archived AND NOT (NEW.deleted AND NEW.visibility = 'model') THEN
    RAISE EXCEPTION 'Chat is archived.' USING ERRCODE = 'PC400',
      DETAIL = 'Unarchive the chat to add messages.';
  END IF;
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_100_check_chat_writable
  BEFORE INSERT ON chat_messages
  FOR EACH ROW EXECUTE FUNCTION chat_messages__check_chat_writable();

-- A new user-visible user message moves the chat's updated_at (it is activity the owner caused).
-- Skipped when the chat was already touched in this transaction (creation writes both).
CREATE OR REPLACE FUNCTION chat_messages__touch_chat() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.role = 'user' AND NEW.visibility <> 'model' THEN
    UPDATE chats SET updated_at = now() WHERE id = NEW.chat_id AND updated_at <> now();
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_500_touch_chat
  AFTER INSERT ON chat_messages
  FOR EACH ROW EXECUTE FUNCTION chat_messages__touch_chat();

-- Keeps chat_prompts in step with the message: a user-visible user message with non-blank text
-- has exactly one row holding that text; anything else (another role, deleted, model-only,
-- non-array content, blank text) has none.
CREATE OR REPLACE FUNCTION chat_messages__sync_prompt() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_text text;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    DELETE FROM chat_prompts WHERE message_id = OLD.id;
  END IF;
  IF NEW.role = 'user' AND NOT NEW.deleted AND NEW.visibility IN ('user', 'both') THEN
    v_text := chat_prompt_text(NEW.content);
    IF v_text IS NOT NULL THEN
      INSERT INTO chat_prompts (message_id, chat_id, text) VALUES (NEW.id, NEW.chat_id, v_text);
    END IF;
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_510_sync_prompt
  AFTER INSERT OR UPDATE OF role, content, visibility, deleted ON chat_messages
  FOR EACH ROW EXECUTE FUNCTION chat_messages__sync_prompt();

-- Change events for the chat stream: one `message` per new user-visible message (model-only
-- messages are not part of the history clients see). The chat's owner and version are read here
-- because a message row has neither.
CREATE OR REPLACE FUNCTION chat_messages__events_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM chat_events_append(ARRAY(
    SELECT ROW(m.chat_id, c.owner_id, 'message', c.version,
      jsonb_build_object('message_id', m.id))::chat_event_row
    FROM new_rows m
    JOIN chats c ON c.id = m.chat_id
    WHERE m.visibility <> 'model' AND NOT m.deleted
    ORDER BY m.id));
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_900_events_on_insert
  AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_messages__events_on_insert();

-- An edit soft-deletes messages: one `history_reset` per chat whose history (what users see:
-- not model-only messages such as context files) lost messages, so its stream subscribers
-- refetch instead of patching.
-- EXECUTE, so the join of the two transition tables is planned for the rows at hand each time:
-- plpgsql would cache a plan made for the first statement's row count, and a nested loop planned
-- for one row is quadratic for an edit that deletes thousands of messages. Edits are rare; the
-- planning is cheap next to them.
CREATE OR REPLACE FUNCTION chat_messages__events_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE $q$
    SELECT chat_events_append(ARRAY(
      SELECT ROW(c.id, c.owner_id, 'history_reset', c.version,
        jsonb_build_object('deleted_message_ids', d.ids))::chat_event_row
      FROM (
        SELECT n.chat_id, jsonb_agg(n.id ORDER BY n.id) AS ids
        FROM new_rows n
        JOIN old_rows o ON o.id = n.id
        WHERE n.deleted AND NOT o.deleted AND n.visibility <> 'model'
        GROUP BY n.chat_id
      ) d
      JOIN chats c ON c.id = d.chat_id
      ORDER BY c.id))
  $q$;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_900_events_on_update
  AFTER UPDATE ON chat_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (chat_events_mode() <> 'off')
  EXECUTE FUNCTION chat_messages__events_on_update();

-- An assistant message's usage and cost never change once stored, nor does a message become or
-- stop being one: the daily cost rollup (chat_messages_600_roll_up_cost) counted it when it was
-- inserted. Soft deletion changes none of these (an edit does not refund a model call).
CREATE OR REPLACE FUNCTION chat_messages__usage_write_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'A message''s usage and cost cannot change once stored.' USING ERRCODE = '55000';
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_110_usage_write_once
  BEFORE UPDATE ON chat_messages
  FOR EACH ROW WHEN (
    (OLD.role = 'assistant' OR NEW.role = 'assistant') AND
    (OLD.role, OLD.chat_id, OLD.created_at, OLD.model_config_id, OLD.total_cost_micros,
      OLD.input_tokens, OLD.output_tokens, OLD.cache_read_tokens, OLD.cache_creation_tokens,
      OLD.runtime_ms)
    IS DISTINCT FROM
    (NEW.role, NEW.chat_id, NEW.created_at, NEW.model_config_id, NEW.total_cost_micros,
      NEW.input_tokens, NEW.output_tokens, NEW.cache_read_tokens, NEW.cache_creation_tokens,
      NEW.runtime_ms)
  )
  EXECUTE FUNCTION chat_messages__usage_write_once();

-- Adds the cost of the statement's assistant messages to chat_cost_daily, one upsert per chat,
-- UTC day and model, in key order, and to chat_spend_daily (owner, organization and day). Before that it takes each owner's spend lock exclusively
-- (chat_lock_spend, in owner and organization order): a create or send checking that owner's
-- spend waits for this transaction and then sees its cost.
CREATE OR REPLACE FUNCTION chat_messages__roll_up_cost() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v record;
BEGIN
  FOR v IN
    SELECT DISTINCT c.owner_id, c.organization_id
    FROM new_rows m JOIN chats c ON c.id = m.chat_id
    WHERE m.role = 'assistant'
    ORDER BY c.owner_id, c.organization_id
  LOOP
    PERFORM chat_lock_spend(v.owner_id, v.organization_id, true);
  END LOOP;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  INSERT INTO chat_cost_daily AS d (
    chat_id, day, model_config_id, owner_id, organization_id, root_chat_id, total_cost_micros,
    priced_message_count, unpriced_message_count, input_tokens, output_tokens,
    cache_read_tokens, cache_creation_tokens, runtime_ms
  )
  SELECT m.chat_id, (m.created_at AT TIME ZONE 'UTC')::date, m.model_config_id, c.owner_id,
    c.organization_id, COALESCE(c.root_chat_id, c.id), COALESCE(sum(m.total_cost_micros), 0),
    count(m.total_cost_micros), count(*) - count(m.total_cost_micros),
    COALESCE(sum(m.input_tokens), 0), COALESCE(sum(m.output_tokens), 0),
    COALESCE(sum(m.cache_read_tokens), 0), COALESCE(sum(m.cache_creation_tokens), 0),
    COALESCE(sum(m.runtime_ms), 0)
  FROM new_rows m
  JOIN chats c ON c.id = m.chat_id
  WHERE m.role = 'assistant'
  GROUP BY 1, 2, 3, 4, 5, 6
  ORDER BY 1, 2, 3
  ON CONFLICT (chat_id, day, model_config_id) DO UPDATE SET
    total_cost_micros = d.total_cost_micros + excluded.total_cost_micros,
    priced_message_count = d.priced_message_count + excluded.priced_message_count,
    unpriced_message_count = d.unpriced_message_count + excluded.unpriced_message_count,
    input_tokens = d.input_tokens + excluded.input_tokens,
    output_tokens = d.output_tokens + excluded.output_tokens,
    cache_read_tokens = d.cache_read_tokens + excluded.cache_read_tokens,
    cache_creation_tokens = d.cache_creation_tokens + excluded.cache_creation_tokens,
    runtime_ms = d.runtime_ms + excluded.runtime_ms;
  -- The spend check's rollup: one row per owner, organization and day, written under the lock.
  INSERT INTO chat_spend_daily AS s (owner_id, organization_id, day, total_cost_micros)
  SELECT c.owner_id, c.organization_id, (m.created_at AT TIME ZONE 'UTC')::date,
    sum(m.total_cost_micros)
  FROM new_rows m
  JOIN chats c ON c.id = m.chat_id
  WHERE m.role = 'assistant' AND m.total_cost_micros > 0
  GROUP BY 1, 2, 3
  ORDER BY 1, 2, 3
  ON CONFLICT (owner_id, organization_id, day) DO UPDATE SET
    total_cost_micros = s.total_cost_micros + excluded.total_cost_micros;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_600_roll_up_cost
  AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION chat_messages__roll_up_cost();

-- When a message was soft-deleted (00051): response chaining never continues a stored response
-- older than a rewrite of the history (GetChatResponseAnchorByChatID). Rows inserted deleted
-- (a lost turn's usage) are not a rewrite and keep NULL.
CREATE OR REPLACE FUNCTION chat_messages__stamp_deleted_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- The moment of the change, not of its transaction's start: as late as it can be known.
  NEW.deleted_at := clock_timestamp();
  RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER chat_messages_120_stamp_deleted_at
  BEFORE UPDATE OF deleted ON chat_messages
  FOR EACH ROW WHEN (NEW.deleted AND NOT OLD.deleted)
  EXECUTE FUNCTION chat_messages__stamp_deleted_at();
