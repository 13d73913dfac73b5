-- A `notification` watch event: a new entry in the user's inbox (docs/api.md "Notifications").
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TYPE chat_event_kind ADD VALUE IF NOT EXISTS 'notification';
