-- name: UpdateChatTitleFromModelByID :execrows
-- A title written by the model. After the first turn it replaces only the fallback title, never
-- one the user set; a regeneration the user asked for (@regenerated) replaces any.
UPDATE chats
SET title = @title, title_source = 'generated'
WHERE id = @id AND (@regenerated::boolean OR title_source = 'fallback');

-- name: BeginChatTitleRegeneration :exec
-- chat_title_regeneration_begin: PC404 for another owner's chat, PC409 while one runs.
SELECT chat_title_regeneration_begin(
  @chat_id, @owner_id, make_interval(secs => @expire_after_seconds::double precision)
);

-- name: DeleteChatTitleRegeneration :exec
DELETE FROM chat_title_regenerations WHERE chat_id = @chat_id;
