-- name: ListChatQueuedMessagesByChatID :many
SELECT id, chat_id, content, created_at, model_config_id, created_by
FROM chat_queued_messages
WHERE chat_id = @chat_id
ORDER BY position;

-- name: GetChatQueuedMessageByID :one
SELECT id, chat_id, content, created_at, model_config_id, created_by
FROM chat_queued_messages
WHERE id = @id AND chat_id = @chat_id;

-- name: PromoteChatQueuedMessage :one
SELECT chat_promote_queued(@chat_id, @owner_id, @queued_id) AS message_id;

-- name: DeleteChatQueuedMessage :exec
-- chat_delete_queued: under the chat's lock; PC404 for another owner's chat or a message that is
-- not queued (any more).
SELECT chat_delete_queued(@chat_id, @owner_id, @id);

-- name: ListChatQueuedMessagesByChatIDs :many
-- Change events: the queues a batch of `queue_update` events names, each in FIFO order.
SELECT id, chat_id, content, created_at, model_config_id, created_by
FROM chat_queued_messages
WHERE chat_id = ANY(@chat_ids::uuid[])
ORDER BY chat_id, position;
