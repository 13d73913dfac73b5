-- name: InsertGroup :one
INSERT INTO groups (organization_id, name, chat_spend_limit_micros)
VALUES (@organization_id, @name, sqlc.narg(chat_spend_limit_micros)::bigint)
RETURNING id, organization_id, name, chat_spend_limit_micros, created_at;

-- name: GetGroupByID :one
SELECT id, organization_id, name, chat_spend_limit_micros, created_at
FROM groups WHERE id = @id;

-- name: UpsertGroupMember :exec
-- Idempotent. The user must already be a member of the group's organization (composite key
-- group_members_organization_member_fkey).
INSERT INTO group_members (group_id, organization_id, user_id)
VALUES (@group_id, @organization_id, @user_id)
ON CONFLICT (group_id, user_id) DO NOTHING;
