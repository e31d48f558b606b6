"""The results store (SQLite or PostgreSQL) and the filters used to query it."""
