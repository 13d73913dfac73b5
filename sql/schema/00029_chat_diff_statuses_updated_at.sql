-- When a chat's git reference last changed from outside: an agent's git activity (or, later, a
-- refresh that found its pull request). The refresher's "pushed moments ago, the pull request may
-- follow" window reads it, so claims and backoffs never move it (docs/sql.md "Pull-request
-- status").
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE chat_diff_statuses ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
