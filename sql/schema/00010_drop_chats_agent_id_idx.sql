-- postgres-migrations disable-transaction
-- chats_agent_id_idx was partial on unarchived chats, so it could not serve the foreign key
-- (deleting an agent sets agent_id to NULL on archived chats too). 00011 creates it again
-- without that condition; a push filters the archived chats it reads, a few per agent.
DROP INDEX CONCURRENTLY chats_agent_id_idx;
