-- postgres-migrations disable-transaction
-- Chats bound to an agent: a push's dirty marking (one index range per push), an agent's active
-- chats (chat-context without a chat_id), and the foreign key from workspace_agents.
CREATE INDEX CONCURRENTLY chats_agent_id_idx ON chats (agent_id) WHERE agent_id IS NOT NULL;
