-- When a message was soft-deleted (an edit, a context-file clear): response chaining
-- (docs/api.md "Response chaining") must not continue a stored response that predates a rewrite
-- of the history it holds. Nullable without a default: a catalog-only change. The trigger that
-- stamps it comes with the column (sql/triggers/chat_messages.sql re-applies the same one), so an
-- older server's edits during the upgrade are stamped too. Rows stored deleted (the usage of a
-- lost turn) were never part of a history the model saw: they keep NULL.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE chat_messages ADD COLUMN deleted_at timestamptz;

CREATE FUNCTION chat_messages__stamp_deleted_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- The moment of the change, not of its transaction's start: as late as it can be known.
  NEW.deleted_at := clock_timestamp();
  RETURN NEW;
END;
$$;

CREATE TRIGGER chat_messages_120_stamp_deleted_at
  BEFORE UPDATE OF deleted ON chat_messages
  FOR EACH ROW WHEN (NEW.deleted AND NOT OLD.deleted)
  EXECUTE FUNCTION chat_messages__stamp_deleted_at();
