-- Titles: regeneration on request, one at a time per chat across replicas. The automatic title
-- after the first turn is written by UpdateChatTitleFromModelByID (sql/queries/chat_titles.sql).
-- Re-applied on every migrate (CREATE OR REPLACE); this file is the one home of these bodies.

-- POST /{chat}/title/regenerate takes this before calling the model: PC404 unless the chat is the
-- owner's, PC409 while another regeneration of it runs (one left by a crashed server expires
-- after p_expire_after).
CREATE OR REPLACE FUNCTION chat_title_regeneration_begin(
  p_chat_id uuid, p_owner_id uuid, p_expire_after interval
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  -- Locked as the insert's foreign key would lock it, but first: a delete in progress (retention)
  -- is waited for here, and then the chat is not found, rather than a foreign key error.
  PERFORM 1 FROM chats WHERE id = p_chat_id AND owner_id = p_owner_id FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Chat not found.' USING ERRCODE = 'PC404';
  END IF;
  INSERT INTO chat_title_regenerations AS r (chat_id) VALUES (p_chat_id)
  ON CONFLICT (chat_id) DO UPDATE SET started_at = now()
    WHERE r.started_at < now() - p_expire_after;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'A title is already being generated for this chat.' USING ERRCODE = 'PC409',
      DETAIL = 'Wait for it to finish.';
  END IF;
END;
$$;
