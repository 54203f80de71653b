"""`feature_flags`: every row at once (the table holds at most one per flag and tenant), and audited upserts."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from schemas.audit import FLAG_DELETE, FLAG_SET, Actor
from store.models import FeatureFlag, utcnow
from store.queries._inserts import dialect_insert
from store.queries.audit import insert_audit


async def flag_rows(session: AsyncSession) -> list[FeatureFlag]:
    return list((await session.exec(select(FeatureFlag))).all())


def _setting(row: FeatureFlag | None) -> dict[str, Any] | None:
    return None if row is None else {"enabled": row.enabled, "rollout_percent": row.rollout_percent}


async def _current(session: AsyncSession, key: str, tenant_id: str) -> FeatureFlag | None:
    # FOR UPDATE (PostgreSQL; SQLite ignores it and serialises writers anyway): two admins changing the same
    # flag at once each record the value the other left as their `before`.
    stmt = select(FeatureFlag).where(FeatureFlag.key == key, FeatureFlag.tenant_id == tenant_id).with_for_update()
    return (await session.exec(stmt)).first()


async def set_flag(
    session: AsyncSession, *, key: str, tenant_id: str, enabled: bool, rollout_percent: int, actor: Actor
) -> FeatureFlag:
    """Set `key` for one scope (`tenant_id`, or GLOBAL_SCOPE for the global value) and audit it as `flag.set`.

    The caller checks that `key` is a known flag and owns the transaction: the row and its audit entry
    commit together or not at all.
    """
    before = _setting(await _current(session, key, tenant_id))
    values = {
        "key": key,
        "tenant_id": tenant_id,
        "enabled": enabled,
        "rollout_percent": rollout_percent,
        "updated_by": actor.key_id,
        "updated_at": utcnow(),
    }
    stmt = dialect_insert(session, FeatureFlag)
    # An upsert rather than read-then-insert: the first two writes of a new (key, tenant) pair cannot both
    # insert and have one fail on the unique constraint.
    update = {name: stmt.excluded[name] for name in ("enabled", "rollout_percent", "updated_by", "updated_at")}
    upsert = stmt.values(values).on_conflict_do_update(index_elements=["key", "tenant_id"], set_=update)
    # populate_existing: the row `_current` loaded into this session takes the new values too.
    result = await session.exec(upsert.returning(FeatureFlag), execution_options={"populate_existing": True})
    row: FeatureFlag = result.scalar_one()
    await insert_audit(
        session, tenant_id=tenant_id, actor=actor, action=FLAG_SET, target=key, before=before, after=_setting(row)
    )
    return row


async def delete_flag(session: AsyncSession, *, key: str, tenant_id: str, actor: Actor) -> bool:
    """Drop `key`'s row for one scope (back to the global value or the default), audited as `flag.delete`.

    Returns:
        False when the scope had no row (nothing changed, nothing audited).
    """
    current = await _current(session, key, tenant_id)
    if current is None:
        return False
    before = _setting(current)
    await session.delete(current)
    await session.flush()
    await insert_audit(
        session, tenant_id=tenant_id, actor=actor, action=FLAG_DELETE, target=key, before=before, after=None
    )
    return True
