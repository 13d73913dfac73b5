-- The in-flight output of running turns (docs/api.md "Chat stream events"; the rules:
-- sql/functions/chat_stream_parts.sql). Forward-only: never edit this file once it has landed.

-- Every message_part and retry event a turn publishes, so a chat stream that connects mid-turn, on
-- any replica, starts with what was streamed so far. UNLOGGED: written a few times a second per
-- streaming chat and worth nothing after a crash (the turns it shows restart), so it costs no WAL
-- and no replica traffic; a crash empties it. No foreign key: an insert per part should not take a
-- share lock on the chat row; rows of a deleted chat go with the periodic purge.
CREATE UNLOGGED TABLE chat_stream_parts (
  chat_id uuid NOT NULL,
  -- From chat_stream_parts_seq: increasing in publication order (a chat publishes one at a time),
  -- across turns, runners and server restarts. The stream's dedup key.
  seq bigint NOT NULL,
  -- The run of the turn that published it (chat_stream_turn_id).
  turn_id text,
  -- A workspace call's command output: the chat_tool_calls id (in flight while the call runs).
  call_id bigint,
  -- The whole SSE block (`event:` and `data:` lines), as live subscribers received it.
  body text NOT NULL,
  -- A stored message (the step's) or a retry replaced it: not in-flight any more, kept only as
  -- the dedup mark for a part still on its way to some replica (deleted by the purge).
  saved boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chat_id, seq)
);

CREATE SEQUENCE chat_stream_parts_seq;
