"""Alembic environment: migrations always run on a connection handed in by
``controller.store.migrate``, so the async engine and its URL are configured once."""

from alembic import context

from edgefleet.controller.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
