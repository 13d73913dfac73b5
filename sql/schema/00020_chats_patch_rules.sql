-- PATCH /{chat} runs one rule function per field (chat_set_archived, chat_set_pin,
-- chat_set_workspace in sql/functions/chats.sql) after chat_lock_for_update, in one transaction;
-- the function that did all of them goes.
DROP FUNCTION IF EXISTS chat_update(uuid, uuid, text, boolean, integer, jsonb, boolean, uuid, boolean, text);
