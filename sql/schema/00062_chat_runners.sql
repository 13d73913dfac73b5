-- The live runners (docs/operations.md "Scaling"; the rules: sql/functions/chat_runners.sql).
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- One row per running runner, written by itself: registered at start, renewed by its heartbeat
-- (one row per interval however many turns it runs: its chats' leases hold while this row is
-- fresh), its free slots reported by its claims, deleted at shutdown or, once stale and holding
-- no lease, by another runner's recovery pass. A pending chat wakes one runner chosen from here
-- (chat_runner_choose), not all of them.
CREATE TABLE chat_runners (
  id uuid PRIMARY KEY,
  hostname text NOT NULL,
  pid integer NOT NULL,
  -- Turns it runs at once (PGCHATD_RUNNER_CONCURRENCY), and how many of those were free at its
  -- last claim or heartbeat.
  capacity integer NOT NULL CHECK (capacity > 0),
  free_slots integer NOT NULL CHECK (free_slots >= 0),
  -- How often it heartbeats: a runner silent for three intervals is not chosen for new work.
  heartbeat_interval interval NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
-- fillfactor 50: heartbeats and claims rewrite these few rows all day; room on the page keeps
-- every rewrite HOT.
