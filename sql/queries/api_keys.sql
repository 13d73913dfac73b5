-- name: InsertAPIKey :one
-- lifetime_seconds NULL makes a key that never expires (the bootstrap key).
INSERT INTO api_keys (id, user_id, hashed_secret, expires_at)
VALUES (
  @id, @user_id, @hashed_secret,
  now() + make_interval(secs => sqlc.narg(lifetime_seconds)::bigint)
)
RETURNING id, user_id, created_at, expires_at;

-- name: GetAPIKeyForAuthByID :one
-- Authentication: the key's stored hash and whether it expired, by the database clock.
SELECT k.id, k.user_id, k.hashed_secret,
  COALESCE(k.expires_at <= now(), false) AS expired,
  COALESCE(k.last_used_at > now() - interval '1 minute', false) AS recently_used
FROM api_keys k
WHERE k.id = @id;

-- name: UpdateAPIKeyLastUsedByID :exec
-- Throttled: a busy key is written at most once a minute, not on every request.
UPDATE api_keys SET last_used_at = now()
WHERE id = @id AND (last_used_at IS NULL OR last_used_at <= now() - interval '1 minute');
