-- Messages deleted before 00051 have no deletion time: they are stamped with this migration's,
-- so a stored response older than them is never continued (the turn replays the history once).
-- Row locks only, on the few deleted rows; in its own transaction after the column exists.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
UPDATE chat_messages SET deleted_at = now() WHERE deleted AND deleted_at IS NULL;
