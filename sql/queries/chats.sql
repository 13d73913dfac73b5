-- name: InsertChat :one
-- chat_create (sql/functions/chats.sql) holds the rules: inheritance for children, workspace
-- binding, model resolution, first messages and file links, status pending in the INSERT.
SELECT chat_create(
  @owner_id, sqlc.narg(organization_id), sqlc.narg(workspace_id), sqlc.narg(model_config_id),
  sqlc.narg(parent_chat_id), sqlc.narg(client_type), sqlc.narg(mode), sqlc.narg(plan_mode),
  sqlc.narg(labels), sqlc.narg(dynamic_tools), sqlc.narg(system_prompt), @content,
  sqlc.narg(api_key_id), sqlc.narg(mcp_server_ids)::uuid[]
) AS id;

-- name: GetChatByIDForOwner :one
-- Chats are visible to their owner only; another owner's id reads as missing.
SELECT c.*
FROM chat_rows c
WHERE c.id = @id AND c.owner_id = @owner_id;

-- name: GetChatLastInjectedContextByID :one
-- GET /{chat}: what the last turn's prompt carried (not in chat_rows: list pages stay small).
-- Turns before null meant "nothing" stored an empty record; it reads as null until the chat's
-- next turn rewrites it.
SELECT NULLIF(last_injected_context, '{"resources": [], "context_files": []}'::jsonb)
  AS last_injected_context
FROM chats WHERE id = @id AND owner_id = @owner_id;

-- name: ListChatsByOwner :many
-- One page of an owner's root chats: pinned first by pin_order, then the newest update, then id.
-- The ORDER BY and the after_id row comparison match chats_list_order_idx column for column, so
-- a first page and a deep cursor page are a backward index scan with no sort. Filters left NULL
-- fold away, because the server plans each execution with its parameter values.
WITH cursor AS (
  SELECT k.pin_order > 0 AS pinned, -k.pin_order AS neg_pin, k.updated_at, k.id
  FROM chats k
  WHERE k.id = sqlc.narg(after_id)::uuid AND k.owner_id = @owner_id
)
SELECT c.*
FROM chat_rows c
WHERE c.owner_id = @owner_id
  AND c.parent_chat_id IS NULL
  AND c.archived = @archived
  AND (
    sqlc.narg(after_id)::uuid IS NULL
    OR ((c.pin_order > 0), (-c.pin_order), c.updated_at, c.id) < (
      (SELECT pinned FROM cursor), (SELECT neg_pin FROM cursor),
      (SELECT updated_at FROM cursor), (SELECT id FROM cursor)
    )
  )
  AND (sqlc.narg(title)::text IS NULL OR strpos(lower(c.title), lower(sqlc.narg(title)::text)) > 0)
  AND (sqlc.narg(has_unread)::boolean IS NULL OR c.has_unread = sqlc.narg(has_unread)::boolean)
  AND (sqlc.narg(labels)::jsonb IS NULL OR c.labels @> sqlc.narg(labels)::jsonb)
  AND (
    (sqlc.narg(pr)::integer IS NULL AND sqlc.narg(repo)::text IS NULL
      AND sqlc.narg(pr_title)::text IS NULL AND sqlc.narg(pr_status)::text IS NULL
      AND sqlc.narg(diff_url)::text IS NULL)
    -- Pull-request filters match the diff status of the chat or of any chat in its family, so a
    -- pull request opened by a subagent finds its root. The matching families are collected once
    -- (an InitPlan) from chat_diff_statuses alone (it carries the owner and the root), served by
    -- an index per filter (docs/sql.md "Pull-request status"), and looked up by id. Substrings
    -- are LIKE patterns with %, _ and \ escaped, so the trigram indexes serve them.
    OR c.id = ANY (ARRAY(
      SELECT d.root_chat_id
      FROM chat_diff_statuses d
      WHERE d.owner_id = @owner_id
        AND (sqlc.narg(pr)::integer IS NULL OR d.pr_number = sqlc.narg(pr)::integer)
        AND (
          sqlc.narg(repo)::text IS NULL
          OR lower(d.git_remote_origin) LIKE '%' || replace(replace(replace(
            lower(sqlc.narg(repo)::text), '\', '\\'), '%', '\%'), '_', '\_') || '%'
          OR lower(d.url) LIKE '%' || replace(replace(replace(
            lower(sqlc.narg(repo)::text), '\', '\\'), '%', '\%'), '_', '\_') || '%'
        )
        AND (
          sqlc.narg(pr_title)::text IS NULL
          OR lower(d.pull_request_title) LIKE '%' || replace(replace(replace(
            lower(sqlc.narg(pr_title)::text), '\', '\\'), '%', '\%'), '_', '\_') || '%'
        )
        AND (
          sqlc.narg(pr_status)::text IS NULL
          OR CASE sqlc.narg(pr_status)::text
            WHEN 'draft' THEN d.pull_request_state = 'open' AND d.pull_request_draft
            WHEN 'open' THEN d.pull_request_state = 'open' AND NOT d.pull_request_draft
            ELSE d.pull_request_state = sqlc.narg(pr_status)::text
          END
        )
        AND (sqlc.narg(diff_url)::text IS NULL OR lower(d.url) = lower(sqlc.narg(diff_url)::text))
    ))
  )
ORDER BY (c.pin_order > 0) DESC, (-c.pin_order) DESC, c.updated_at DESC, c.id DESC
LIMIT @page_limit OFFSET @page_offset;

-- name: ListChildChatsByRootIDs :many
-- The subagent chats of listed roots (every depth), grouped by root and newest first within it:
-- the order chats_root_chat_id_idx yields for root_chat_id = ANY(...), so nothing is sorted.
SELECT c.*
FROM chat_rows c
WHERE c.root_chat_id = ANY (@root_ids::uuid[]) AND c.archived = @archived
ORDER BY c.root_chat_id, c.created_at DESC, c.id DESC;

-- name: GetChatExistsByIDForOwner :one
SELECT EXISTS (SELECT 1 FROM chats WHERE id = @id AND owner_id = @owner_id) AS found;

-- name: LockChatForUpdate :exec
-- PATCH /{chat} with more than one field, first: every lock its rules take, in the global order,
-- so the rules that follow in the same transaction never wait out of order
-- (chat_lock_for_update, sql/functions/chats.sql). PC404 for another owner's chat.
SELECT chat_lock_for_update(
  @id, @owner_id, sqlc.narg(archived), @pin, @set_workspace, sqlc.narg(workspace_id)
);

-- name: ArchiveChat :exec
-- Archives the chat and every descendant, clears their pins and closes the gap (chat_archive).
SELECT chat_set_archived(@id, @owner_id, true, sqlc.narg(api_key_id));

-- name: UnarchiveChat :exec
-- Unarchives the chat and every descendant; a child under an archived parent stays (PC400).
SELECT chat_set_archived(@id, @owner_id, false, sqlc.narg(api_key_id));

-- name: PinChat :exec
-- Pins an unpinned chat at the end (n+1), or moves a pinned one to @pin_order (clamped to 1..n):
-- pins stay a dense 1..n (chat_pin).
SELECT chat_set_pin(@id, @owner_id, @pin_order);

-- name: UnpinChat :exec
-- Unpins the chat and closes the gap.
SELECT chat_set_pin(@id, @owner_id, 0);

-- name: BindChatWorkspace :exec
-- Binds the chat to the workspace's latest build and agent and pins its context; NULL unbinds.
SELECT chat_set_workspace(@id, @owner_id, sqlc.narg(workspace_id));

-- name: RenameChatByID :execrows
-- A title the user set: never replaced by a generated one (UpdateChatTitleFromModelByID).
UPDATE chats SET title = @title, title_source = 'user'
WHERE id = @id AND owner_id = @owner_id;

-- name: SetChatLabelsByID :execrows
UPDATE chats SET labels = @labels
WHERE id = @id AND owner_id = @owner_id;

-- name: SetChatPlanModeByID :execrows
UPDATE chats SET plan_mode = sqlc.narg(plan_mode)
WHERE id = @id AND owner_id = @owner_id;

-- name: ListLatestChatIDsByWorkspaceIDs :many
-- The most recently updated unarchived root chat of the owner in each workspace.
SELECT w.id AS workspace_id, l.id AS chat_id
FROM unnest(@workspace_ids::uuid[]) AS w (id)
CROSS JOIN LATERAL (
  SELECT c.id
  FROM chats c
  WHERE c.workspace_id = w.id AND c.owner_id = @owner_id
    AND c.parent_chat_id IS NULL AND NOT c.archived
  ORDER BY c.updated_at DESC, c.id DESC
  LIMIT 1
) AS l;

-- name: MarkChatReadByID :one
-- Moves the read cursor to the newest message (stream connect and disconnect).
SELECT chat_mark_read(@id) AS last_read_message_id;

-- name: ListChatsAndChildrenByIDs :many
-- Watch events show a root with its subagent chats like GET /{chat}: the chats a batch names and
-- the children of those that are roots (a child has none), both archive states, in one round
-- trip per batch (a BitmapOr of the primary key and chats_root_chat_id_idx). The children come
-- grouped by root, newest first within it, as ListChildChatsByRootIDs orders them. No owner
-- filter: each event is delivered only to its chat's owner.
SELECT c.*
FROM chat_rows c
WHERE c.id = ANY(@ids::uuid[]) OR c.root_chat_id = ANY(@ids::uuid[])
ORDER BY c.root_chat_id NULLS FIRST, c.created_at DESC, c.id DESC;

-- name: UpdateChatLastTurnSummaryByID :execrows
-- The summary of the turn that ended when updated_at was @expected_updated_at: 0 rows when the
-- chat moved on since (a newer turn, a new message), so an older summary never overwrites a
-- newer one. Blank means none. updated_at stays (chats__track_changes).
UPDATE chats
SET last_turn_summary = NULLIF(btrim(@summary::text), '')
WHERE id = @id AND updated_at = @expected_updated_at;
