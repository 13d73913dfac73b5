-- name: GetUserByID :one
SELECT u.id, u.username, u.name, u.email, u.roles::text[] AS roles, u.chat_spend_limit_micros, u.created_at,
  ARRAY(
    SELECT m.organization_id FROM organization_members m
    WHERE m.user_id = u.id ORDER BY m.created_at, m.organization_id
  )::uuid[] AS organization_ids
FROM users u
WHERE u.id = @id;

-- name: GetUserByUsername :one
SELECT u.id, u.username, u.name, u.email, u.roles::text[] AS roles, u.chat_spend_limit_micros, u.created_at,
  ARRAY(
    SELECT m.organization_id FROM organization_members m
    WHERE m.user_id = u.id ORDER BY m.created_at, m.organization_id
  )::uuid[] AS organization_ids
FROM users u
WHERE lower(u.username) = lower(@username);

-- name: InsertUser :one
-- One statement inserts the user and its memberships, so an unknown organization id leaves
-- nothing behind (the foreign key fails the whole statement).
WITH inserted AS (
  INSERT INTO users (username, name, email, roles, chat_spend_limit_micros)
  VALUES (@username, @name, sqlc.narg(email), @roles::site_role[], sqlc.narg(chat_spend_limit_micros)::bigint)
  RETURNING id, username, name, email, roles, chat_spend_limit_micros, created_at
), memberships AS (
  INSERT INTO organization_members (organization_id, user_id)
  SELECT DISTINCT org_id, inserted.id
  FROM inserted, unnest(@organization_ids::uuid[]) AS org_id
  RETURNING organization_id
)
SELECT inserted.id, inserted.username, inserted.name, inserted.email, inserted.roles::text[] AS roles,
  inserted.chat_spend_limit_micros, inserted.created_at,
  ARRAY(SELECT organization_id FROM memberships ORDER BY organization_id)::uuid[] AS organization_ids
FROM inserted;

-- name: CountUsers :one
SELECT count(*) AS count FROM users;
