-- postgres-migrations disable-transaction
-- The foreign key from api_keys: a deleted key clears the attribution of the chats it created.
CREATE INDEX CONCURRENTLY chats_api_key_id_idx ON chats (api_key_id) WHERE api_key_id IS NOT NULL;
