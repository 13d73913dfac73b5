-- name: GetChatHousekeepingConfig :one
SELECT retention_days, auto_archive_days, updated_at FROM chat_housekeeping_config;

-- name: SetChatRetentionDays :one
-- chat_housekeeping_set_retention: see sql/functions/chat_housekeeping.sql.
SELECT c.retention_days, c.auto_archive_days, c.updated_at
FROM chat_housekeeping_set_retention(@actor_id, @retention_days) AS c;

-- name: SetChatAutoArchiveDays :one
-- chat_housekeeping_set_auto_archive: see sql/functions/chat_housekeeping.sql.
SELECT c.retention_days, c.auto_archive_days, c.updated_at
FROM chat_housekeeping_set_auto_archive(@actor_id, @auto_archive_days) AS c;
