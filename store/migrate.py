"""Run the Alembic migrations programmatically; no alembic.ini is needed at run time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from store.engine import normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the repo's `migrations/` and the database at `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats "%" as interpolation; URL-encoded passwords contain it.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at `url` to the latest revision; a no-op when it is already there.

    Synchronous because migrations run their own event loop (`migrations/env.py` uses `asyncio.run`):
    from async code call it as `await asyncio.to_thread(upgrade, url)`.
    """
    command.upgrade(alembic_config(url), "head")
