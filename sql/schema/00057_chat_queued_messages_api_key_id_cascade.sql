-- A deleted (revoked) API key takes the messages it queued and that were not sent yet with it:
-- they would otherwise be sent later under no key, their turn and audit entry attributed to
-- nobody. The queue is tiny (at most 20 rows per busy chat), so the new key is validated at once;
-- api_keys is held SHARE ROW EXCLUSIVE meanwhile (authentication reads it on; last_used_at
-- updates wait a moment). Alone in its migration: it locks chat_queued_messages exclusively.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE chat_queued_messages
  DROP CONSTRAINT chat_queued_messages_api_key_id_fkey,
  ADD CONSTRAINT chat_queued_messages_api_key_id_fkey
    FOREIGN KEY (api_key_id) REFERENCES api_keys (id) ON DELETE CASCADE;
