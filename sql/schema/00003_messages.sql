-- Messages and the turn lifecycle: the per-chat queue, and prompt texts kept at write time.
-- Rules live in sql/functions/chat_messages.sql and sql/triggers/chat_messages.sql.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- Messages sent while the chat was busy, admitted one at a time in `position` order (FIFO;
-- "promote" on a running chat moves one in front of the head).
CREATE TABLE chat_queued_messages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
  content jsonb NOT NULL,
  -- The model the message was sent with; promotion falls back to the chat's when it is unusable.
  model_config_id uuid REFERENCES chat_model_configs (id),
  created_by uuid REFERENCES users (id) ON DELETE SET NULL,
  api_key_id text REFERENCES api_keys (id) ON DELETE SET NULL,
  position bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chat_queued_messages_position_key UNIQUE (chat_id, position)
);

-- The prompt history (GET /{chat}/prompts): one narrow row per user-visible user message whose
-- text parts, joined in authored order, are not blank. Written by chat_messages__sync_prompt at
-- the same time as the message, so reading prompts touches this index and these small rows
-- only: no JSON is unrolled and no row is removed by a filter at read time.
CREATE TABLE chat_prompts (
  message_id bigint PRIMARY KEY REFERENCES chat_messages (id) ON DELETE CASCADE,
  chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
  text text NOT NULL
);
-- Newest first per chat.
CREATE INDEX chat_prompts_chat_id_idx ON chat_prompts (chat_id, message_id DESC);

-- A chat's history pages (GET /{chat}/messages): visible messages newest first.
CREATE INDEX chat_messages_visible_idx ON chat_messages (chat_id, id DESC)
  WHERE NOT deleted AND visibility <> 'model';
