-- name: InsertAPIKey :one
-- lifetime_seconds NULL makes a key that never expires (the bootstrap key).
INSERT INTO api_keys (id, user_id, hashed_secret, expires_at)
VALUES (
  @id, @user_id, @hashed_secret,
  now() + make_interval(secs => sqlc.narg(lifetime_seconds)::bigint)
)
RETURNING id, user_id, created_at, expires_at;

-- name: GetAPIKeyForAuthByID :one
-- Authentication, once per request: the key's stored hash, whether it expired (by the database
-- clock), and the user it belongs to, in one round trip.
SELECT k.id, k.hashed_secret,
  COALESCE(k.expires_at <= now(), false) AS expired,
  COALESCE(k.last_used_at > now() - interval '1 minute', false) AS recently_used,
  u.id AS user_id, u.username, u.name, u.email, u.roles::text[] AS roles,
  u.chat_spend_limit_micros, u.created_at,
  ARRAY(
    SELECT m.organization_id FROM organization_members m
    WHERE m.user_id = u.id ORDER BY m.created_at, m.organization_id
  )::uuid[] AS organization_ids
FROM api_keys k
JOIN users u ON u.id = k.user_id
WHERE k.id = @id;

-- name: UpdateAPIKeyLastUsedByID :exec
-- Throttled: a busy key is written at most once a minute, not on every request.
UPDATE api_keys SET last_used_at = now()
WHERE id = @id AND (last_used_at IS NULL OR last_used_at <= now() - interval '1 minute');
