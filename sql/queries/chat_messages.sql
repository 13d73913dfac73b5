-- name: InsertChatMessage :one
-- The chat_messages triggers reject archived chats and move updated_at for user messages.
INSERT INTO chat_messages (chat_id, role, content, visibility, model_config_id, created_by, api_key_id)
VALUES (
  @chat_id, @role, @content, @visibility, sqlc.narg(model_config_id), sqlc.narg(created_by),
  sqlc.narg(api_key_id)
)
RETURNING id, chat_id, created_at, role, content, visibility, model_config_id, created_by;
