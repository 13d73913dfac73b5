-- postgres-migrations disable-transaction
-- The foreign key from api_keys: a deleted key clears the attribution of the messages it sent.
CREATE INDEX CONCURRENTLY chat_messages_api_key_id_idx ON chat_messages (api_key_id)
  WHERE api_key_id IS NOT NULL;
