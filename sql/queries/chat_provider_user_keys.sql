-- name: SetChatProviderUserKey :exec
-- chat_provider_set_user_key: see sql/functions/chat_models.sql.
SELECT chat_provider_set_user_key(@provider_id, @user_id, @api_key_ciphertext);

-- name: DeleteChatProviderUserKey :exec
-- chat_provider_delete_user_key: see sql/functions/chat_models.sql.
SELECT chat_provider_delete_user_key(@provider_id, @user_id);
