-- name: InsertChatFile :one
INSERT INTO chat_files (owner_id, organization_id, name, mimetype, data)
VALUES (@owner_id, @organization_id, @name, @mimetype, @data)
RETURNING id, name, mimetype, octet_length(data) AS size, created_at;

-- name: GetChatFileByIDForOwner :one
-- Files are private to the user who uploaded them.
SELECT id, name, mimetype, data, created_at
FROM chat_files
WHERE id = @id AND owner_id = @owner_id;

-- name: ListChatFilesByChatID :many
SELECT f.id, f.name, f.mimetype, octet_length(f.data) AS size, f.created_at
FROM chat_file_links l
JOIN chat_files f ON f.id = l.file_id
WHERE l.chat_id = @chat_id
ORDER BY l.created_at, f.id;

-- name: ListChatFileDataByIDs :many
-- The runner: the bytes of the files a prompt's messages name, only among the chat's own files.
SELECT f.id, f.name, f.mimetype, f.data
FROM chat_file_links l
JOIN chat_files f ON f.id = l.file_id
WHERE l.chat_id = @chat_id AND l.file_id = ANY (@ids::uuid[]);

-- name: GetChatPlanFileByChatID :one
-- The chat's plan file as plan mode's write_file, edit_files and read_file see it: the newest
-- plan.md linked to the chat (a chat links few files: the primary key's chat_id prefix finds them).
SELECT f.id, f.data
FROM chat_file_links l
JOIN chat_files f ON f.id = l.file_id
WHERE l.chat_id = @chat_id AND f.name = 'plan.md'
ORDER BY l.created_at DESC, f.id DESC
LIMIT 1;
