-- Where the change-event read horizon was, and when: pruning deletes only events below a horizon
-- sampled at least the retention ago. created_at is the writing transaction's start, so an
-- event of a transaction that stayed open longer than the retention looked old enough to prune
-- the moment it committed, before any tailer had read it; an event below a horizon sampled a
-- retention ago has been committed (and readable) for at least that long.
-- Written and trimmed by chat_events_prune (sql/functions/chat_events.sql), a row per call.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE TABLE chat_event_horizon_samples (
  sampled_at timestamptz PRIMARY KEY,
  horizon xid8 NOT NULL
);
