"""Alembic's environment for the results store: migrations run only through
``harness.store.migrations.ensure_schema``, on the connection (and inside the transaction) it hands
over in ``config.attributes["connection"]``; there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

from harness.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the results store's migrations run through harness.store.migrations.ensure_schema(engine, ...), not the alembic command")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
