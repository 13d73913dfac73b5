-- name: PingDatabase :one
-- Health check: the database answers and migrations ran (the users table exists).
SELECT to_regclass('public.users') IS NOT NULL AS migrated;
