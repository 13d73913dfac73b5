-- Housekeeping settings of the deployment (docs/api.md "Housekeeping"): how long archived chats
-- are kept, and after how many days without activity roots are archived. 0 turns either off.
-- Changed by site owners through chat_housekeeping_set_* (sql/functions/chat_housekeeping.sql),
-- audited.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE TABLE chat_housekeeping_config (
  singleton boolean PRIMARY KEY DEFAULT true,
  retention_days integer NOT NULL DEFAULT 0,
  auto_archive_days integer NOT NULL DEFAULT 0,
  -- The UTC date auto-archive last went through every eligible root: eligibility changes only at
  -- UTC midnight, so later runs that day have nothing to look for.
  auto_archive_done_on date,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chat_housekeeping_config_singleton CHECK (singleton),
  CONSTRAINT chat_housekeeping_config_retention_days CHECK (retention_days BETWEEN 0 AND 3650),
  CONSTRAINT chat_housekeeping_config_auto_archive_days CHECK (auto_archive_days BETWEEN 0 AND 3650)
);
INSERT INTO chat_housekeeping_config DEFAULT VALUES;

-- A user's inbox (GET /api/v2/notifications): what the server tells them, newest first.
CREATE TABLE notifications (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind text NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  read_at timestamptz,
  CONSTRAINT notifications_kind CHECK (kind IN ('chats_auto_archived'))
);
-- The inbox, newest first, and its keyset pages (after_id); the unread filter and read-all.
CREATE INDEX notifications_user_id_idx ON notifications (user_id, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id, id DESC) WHERE read_at IS NULL;
