-- The chat as the API shows it is the view chat_rows, re-applied from sql/views/chat_rows.sql on
-- every migrate with its columns listed. chats_expanded froze `c.*` as it was when 00002 ran, and
-- every query repeated its 42 columns.
DROP VIEW IF EXISTS chats_expanded;
