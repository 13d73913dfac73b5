-- GET /usage-limits lists the user and group overrides. Alone in its migration: it locks users
-- and groups against writes while it builds (both are small).
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE INDEX users_chat_spend_limit_idx ON users (lower(username))
  WHERE chat_spend_limit_micros IS NOT NULL;
CREATE INDEX groups_chat_spend_limit_idx ON groups (organization_id, lower(name))
  WHERE chat_spend_limit_micros IS NOT NULL;
