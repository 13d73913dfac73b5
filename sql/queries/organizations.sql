-- name: InsertOrganization :one
INSERT INTO organizations (name) VALUES (@name)
RETURNING id, name, created_at;

-- name: GetOrganizationByID :one
SELECT id, name, created_at FROM organizations WHERE id = @id;

-- name: GetOrganizationByName :one
SELECT id, name, created_at FROM organizations WHERE lower(name) = lower(@name);

-- name: UpsertOrganizationMember :exec
-- Idempotent: adding an existing member changes nothing.
INSERT INTO organization_members (organization_id, user_id)
VALUES (@organization_id, @user_id)
ON CONFLICT (organization_id, user_id) DO NOTHING;
