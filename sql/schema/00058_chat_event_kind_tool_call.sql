-- Workspace tool calls reach their agent through the change-event log (docs/api.md "Workspace
-- tools"): `tool_call` when the runner records a call for the agent to run, `tool_call_canceled`
-- when the call ends without the agent's answer (its turn ended, it timed out). Their own
-- migration: a new enum value cannot be used in the transaction that adds it (00060 indexes them).
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TYPE chat_event_kind ADD VALUE IF NOT EXISTS 'tool_call';
ALTER TYPE chat_event_kind ADD VALUE IF NOT EXISTS 'tool_call_canceled';
