-- The refresher's state (docs/sql.md "Pull-request status"): why the last refresh failed, the
-- forge a reference lives on, and forges that asked to be left alone until a time.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- The last refresh's failure (the forge's status and message), NULL after a success.
ALTER TABLE chat_diff_statuses ADD COLUMN last_error text;
-- The host of the remote (https://host/..., ssh://user@host:port/..., user@host:path), lower
-- case: rate limits are per forge.
ALTER TABLE chat_diff_statuses ADD COLUMN forge_host text GENERATED ALWAYS AS (
  lower(substring(git_remote_origin FROM '^(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^@/]+@)?([^:/]+)'))
) STORED;

-- A forge that answered "rate limited": no row of it is claimed before `until` (its reset time).
CREATE TABLE chat_forge_backoffs (
  host text PRIMARY KEY,
  until timestamptz NOT NULL
);
