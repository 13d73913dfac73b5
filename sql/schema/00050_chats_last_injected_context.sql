-- What the model saw (docs/api.md "What the model saw"): the pinned workspace resources and the
-- context files the last turn's prompt carried, with content hashes and sizes. Nullable without a
-- default: a catalog-only change, the only lock it takes on chats is the brief one to add it.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE chats ADD COLUMN last_injected_context jsonb;
