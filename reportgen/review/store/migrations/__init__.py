"""Alembic migrations of the reward log (run by `reportgen.review.store.engine.migrate`)."""
