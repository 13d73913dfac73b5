-- Response chaining (docs/api.md "Response chaining"): an OpenAI model config may let the
-- Responses API keep its responses (store), so a follow-up turn sends previous_response_id and only
-- the new messages. Off by default: nothing is kept at the provider, every turn replays the
-- history. chat_model_configs holds administrators' rows: a catalog-only change.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE chat_model_configs ADD COLUMN store_responses boolean NOT NULL DEFAULT false;
