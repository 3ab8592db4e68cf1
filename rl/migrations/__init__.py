"""Alembic migrations of the reward log (run by `rl.db.engine.migrate`)."""
