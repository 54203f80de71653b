"""The app database: SQLModel tables, the async engine for SQLite and PostgreSQL, and queries."""
