-- postgres-migrations disable-transaction
-- The foreign key from users: a deleted user is removed from the builds they started (SET NULL).
CREATE INDEX CONCURRENTLY workspace_builds_created_by_idx ON workspace_builds (created_by)
  WHERE created_by IS NOT NULL;
