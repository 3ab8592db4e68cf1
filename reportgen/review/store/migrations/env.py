"""Alembic environment: migrations run on the connection `reportgen.review.store.engine.migrate` hands over."""

from alembic import context

from reportgen.review.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
