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

-- name: ListChatAutoArchiveCandidates :many
-- chat_auto_archive_candidates: see sql/functions/chat_housekeeping.sql.
SELECT a.chat_id, a.owner_id FROM chat_auto_archive_candidates(@batch_size) AS a;

-- name: GetChatAutoArchiveCutoff :one
-- chat_auto_archive_cutoff: the UTC date idle roots must predate; NULL when off or done today.
SELECT chat_auto_archive_cutoff()::text AS cutoff;

-- name: MarkChatAutoArchiveDone :exec
-- chat_auto_archive_mark_done: today's eligible roots (for this cutoff) are all archived.
SELECT chat_auto_archive_mark_done(@cutoff::date);

-- name: AutoArchiveChatsOfOwner :one
-- chat_auto_archive_owner: archives the owner's roots that are still eligible and writes their
-- digest; how many it archived.
SELECT chat_auto_archive_owner(@owner_id, @root_ids::uuid[]) AS archived;

-- name: ListChatRetentionCandidates :many
-- chat_retention_candidates: see sql/functions/chat_housekeeping.sql.
SELECT r.chat_id FROM chat_retention_candidates(@batch_size) AS r;

-- name: PurgeArchivedChats :one
-- chat_retention_purge: the number of chats deleted (the chats that still qualify and their
-- subtrees).
SELECT chat_retention_purge(@chat_ids::uuid[]) AS deleted;

-- name: PurgeUnlinkedChatFiles :one
SELECT chat_retention_purge_files(@batch_size) AS deleted;

-- name: PurgeAuditLogs :one
SELECT chat_retention_purge_audit_logs(@retention_days, @batch_size) AS deleted;

-- name: PurgeNotifications :one
SELECT chat_retention_purge_notifications(@retention_days, @batch_size) AS deleted;

-- name: PurgeExpiredForgeBackoffs :execrows
-- Rate limits whose reset has passed mean nothing any more.
DELETE FROM chat_forge_backoffs WHERE until < chat_clock_now();

-- name: TryLockHousekeeping :one
-- One housekeeping run at a time across replicas: a session lock, released by
-- UnlockHousekeeping or when the session ends (a process that dies frees it).
SELECT pg_try_advisory_lock(hashtext('pgchatd.housekeeping'), 0) AS locked;

-- name: UnlockHousekeeping :one
SELECT pg_advisory_unlock(hashtext('pgchatd.housekeeping'), 0) AS unlocked;
