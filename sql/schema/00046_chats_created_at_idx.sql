-- postgres-migrations disable-transaction
-- The telemetry snapshot: chats created in a window (ListTelemetryChats,
-- sql/queries/telemetry.sql). Built concurrently: writes go on while it builds.
CREATE INDEX CONCURRENTLY chats_created_at_idx ON chats (created_at, id);
