-- postgres-migrations disable-transaction
-- Recovery of leases held by runners of the previous release, which renew chats.heartbeat_at
-- instead of a chat_runners row (ListChatRecoveryCandidates). This release's runners leave
-- heartbeat_at NULL on the chats they hold, so outside a rolling upgrade the index is empty.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE INDEX CONCURRENTLY IF NOT EXISTS chats_legacy_leases_idx
  ON chats (heartbeat_at) WHERE worker_id IS NOT NULL AND heartbeat_at IS NOT NULL;
