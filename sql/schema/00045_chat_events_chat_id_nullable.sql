-- A notification event is about a user, not a chat: its chat_id is NULL. Dropping NOT NULL only
-- changes the catalog (no scan, no rewrite); the table is locked for that instant, alone in its
-- migration because every write appends to it.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE chat_events ALTER COLUMN chat_id DROP NOT NULL;
