-- name: InsertWorkspace :one
INSERT INTO workspaces (organization_id, owner_id, name)
VALUES (@organization_id, @owner_id, @name)
RETURNING id, organization_id, owner_id, name, created_at;

-- name: GetWorkspaceByID :one
SELECT id, organization_id, owner_id, name, latest_build_number, created_at
FROM workspaces WHERE id = @id;

-- name: InsertWorkspaceBuild :one
-- One statement: bump the workspace's build counter under its row lock (so concurrent builds get
-- distinct numbers), insert the build and its agents in the given order.
WITH bumped AS (
  UPDATE workspaces SET latest_build_number = latest_build_number + 1
  WHERE id = @workspace_id
  RETURNING id, latest_build_number
), build AS (
  INSERT INTO workspace_builds (workspace_id, build_number, created_by)
  SELECT bumped.id, bumped.latest_build_number, sqlc.narg(created_by)::uuid FROM bumped
  RETURNING id, workspace_id, build_number, created_at
), agents AS (
  INSERT INTO workspace_agents (build_id, name, ordinal, token_id, hashed_token)
  SELECT build.id, a.name, (a.ordinal - 1)::integer, a.token_id, a.hashed_token
  FROM build,
    unnest(@agent_names::text[], @agent_token_ids::text[], @agent_hashed_tokens::bytea[])
      WITH ORDINALITY AS a(name, token_id, hashed_token, ordinal)
  RETURNING id, ordinal
)
SELECT build.id, build.workspace_id, build.build_number, build.created_at,
  ARRAY(SELECT agents.id FROM agents ORDER BY agents.ordinal)::uuid[] AS agent_ids
FROM build;

-- name: GetWorkspaceAgentForAuthByTokenID :one
-- Authentication of a workspace agent. Only agents of the workspace's latest build may act.
SELECT a.id, a.name, a.hashed_token, a.build_id, b.workspace_id, w.owner_id, w.organization_id,
  (b.build_number = w.latest_build_number) AS is_latest_build
FROM workspace_agents a
JOIN workspace_builds b ON b.id = a.build_id
JOIN workspaces w ON w.id = b.workspace_id
WHERE a.token_id = @token_id;
