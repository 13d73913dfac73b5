-- Checks the existing entries against the constraint 00054 added NOT VALID. VALIDATE takes a
-- SHARE UPDATE EXCLUSIVE lock: writers of audit_logs go on while it scans.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE audit_logs VALIDATE CONSTRAINT audit_logs_action;
