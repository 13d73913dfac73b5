-- name: ListNotificationsByUserID :many
-- GET /api/v2/notifications: one page of the user's inbox, newest first, continuing below
-- after_id (keyset); one row more than the page tells whether there is more.
-- notifications_user_id_idx (or notifications_unread_idx with unread) in order: no sort.
SELECT id, kind, title, body, created_at, read_at
FROM notifications
WHERE user_id = @user_id
  AND (sqlc.narg(after_id)::bigint IS NULL OR id < sqlc.narg(after_id)::bigint)
  AND (NOT @unread_only::boolean OR read_at IS NULL)
ORDER BY id DESC
LIMIT @page_limit;

-- name: MarkNotificationReadByID :execrows
-- Marks one of the user's notifications read (again: a no-op that still counts as found).
UPDATE notifications SET read_at = COALESCE(read_at, now())
WHERE id = @id AND user_id = @user_id;

-- name: MarkAllNotificationsReadByUserID :execrows
UPDATE notifications SET read_at = now()
WHERE user_id = @user_id AND read_at IS NULL;
