-- The chat runner: claiming pending chats, leases and heartbeats, recovery, generated titles.
-- Rules live in sql/functions/chat_runner.sql and sql/triggers/chats.sql.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- When the status last changed (maintained by chats__track_changes). The claim order (oldest
-- pending first) and the requires_action timeout read it; updated_at cannot serve, because pins,
-- labels and new messages move it too.
ALTER TABLE chats ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();

-- Who wrote the title: the fallback from the first message, the model, or the user (PATCH). The
-- runner titles a chat from the model only while it is 'fallback': a user's title is never
-- overwritten.
CREATE TYPE chat_title_source AS ENUM ('fallback', 'generated', 'user');
ALTER TABLE chats ADD COLUMN title_source chat_title_source NOT NULL DEFAULT 'fallback';
-- Chats that existed before: a title other than the first message's fallback was set by a user.
-- In a DO block: on a new database the routines are applied after the migrations, and its chats
-- table is empty, so the UPDATE (which calls chat_fallback_title) is never planned there.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM chats) THEN
    UPDATE chats c SET title_source = 'user'
    WHERE c.title <> chat_fallback_title((
      SELECT m.content FROM chat_messages m
      WHERE m.chat_id = c.id AND m.role = 'user'
      ORDER BY m.id
      LIMIT 1
    ));
  END IF;
END $$;

-- The lease columns worker_id, started_at and heartbeat_at exist since 00002: a chat is leased
-- to a runner while worker_id is set; started_at identifies the run (a runner may claim the same
-- chat again after an edit); heartbeat_at is renewed by the holder's batched heartbeat.

-- The claim: pending, unarchived chats, oldest status change first. Partial, so it holds only
-- the few chats waiting for a runner, however many chats exist.
CREATE INDEX chats_pending_idx ON chats (status_changed_at, id)
  WHERE status = 'pending' AND NOT archived;
-- Heartbeats, shutdown and recovery: the leased chats (at most the ones running now), by holder.
-- WARNING: heartbeat_at is deliberately in no index. The batched heartbeat rewrites it for every
-- running chat each interval; indexed, none of those updates could be HOT and each would add an
-- entry to every index of chats. Recovery reads the leased chats through this index and filters.
CREATE INDEX chats_leased_idx ON chats (worker_id) WHERE worker_id IS NOT NULL;
-- Recovery: chats left waiting for client tool results too long.
CREATE INDEX chats_requires_action_idx ON chats (status_changed_at)
  WHERE status = 'requires_action';

-- POST /{chat}/title/regenerate runs one at a time per chat, across server replicas: a row here
-- while one runs. started_at lets a row left behind by a crashed server expire.
CREATE TABLE chat_title_regenerations (
  chat_id uuid PRIMARY KEY REFERENCES chats (id) ON DELETE CASCADE,
  started_at timestamptz NOT NULL DEFAULT now()
);
