"""The revisions of the results store's schema, oldest first (Alembic scripts; see ``harness.store.migrations``)."""
