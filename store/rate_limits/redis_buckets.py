"""Rate-limit buckets in Redis: for many API replicas at high request rates (DESIGN.md, "Data").

One Lua script reads, refills, decides and charges every bucket of a request; Redis runs a script alone, so an
admission is atomic across all replicas without a lock. The script mirrors `domain.rate_limits` (`refill`,
`need`, `settled`) and hands the refilled levels back, so the verdict's details (which bucket refused, the
headers) are computed by the same Python as the database backend's. Each bucket is a hash
`{prefix}{tenant}:{rpm|tpm}:{key|tenant}:{id}` with `tokens` and `updated_at`; the tenant in braces is a Redis
Cluster hash tag, so every bucket of one request is on one shard, as a multi-key script needs. A bucket expires
once it would be full again: a missing bucket reads as full, so nothing is lost and idle buckets take no memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis.asyncio as redis

from domain.rate_limits import NOTHING_TO_CHECK, Admission, BucketCheck, BucketRule, decide, tpm_rules
from schemas.policies import RateRules

DEFAULT_PREFIX = "kintsugi:rl:"
TIMEOUT_S = 2.0
"""How long one admission waits for Redis before the request is answered 503 (`RateLimiterUnavailable`)."""


class RateLimiterUnavailable(Exception):
    """The buckets' store cannot be reached: the API answers 503 rather than admit without limits."""


# KEYS: the buckets. ARGV: mode ("acquire" | "settle"), now, then per bucket its capacity and its cost (for
# settle: the tokens to take, negative to give back). Returns {admitted (1|0), level after refill per bucket}.
# Levels travel as "%.17g" strings: Redis turns a Lua number into an integer, and 17 digits round-trip a double.
_SCRIPT = """
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local n = #KEYS
local levels, stamps, caps, costs = {}, {}, {}, {}
local admitted = 1
for i = 1, n do
  local capacity = tonumber(ARGV[1 + 2 * i])
  local cost = tonumber(ARGV[2 + 2 * i])
  local stored = redis.call('HMGET', KEYS[i], 'tokens', 'updated_at')
  local level, at = capacity, now
  if stored[1] then
    level, at = tonumber(stored[1]), tonumber(stored[2])
    local elapsed = now - at
    if elapsed < 0 then elapsed = 0 end
    level = math.min(capacity, level + elapsed * capacity / 60)
    if now > at then at = now end
  end
  levels[i], stamps[i], caps[i], costs[i] = level, at, capacity, cost
  if mode == 'acquire' and level < math.min(cost, capacity) then admitted = 0 end
end
local out = {admitted}
for i = 1, n do
  out[i + 1] = string.format('%.17g', levels[i])
  if admitted == 1 then
    local left = math.min(caps[i], levels[i] - costs[i])
    redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', left), 'updated_at', string.format('%.17g', stamps[i]))
    local full_in_ms = math.ceil((caps[i] - left) * 60000 / caps[i]) + 1000
    redis.call('PEXPIRE', KEYS[i], full_in_ms)
  end
end
return out
"""


class RedisRateLimiter:
    """Buckets in Redis, every admission one script call."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._script = client.register_script(_SCRIPT)  # EVALSHA, loading the script again after a Redis restart

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, clock: Callable[[], float] = time.time
    ) -> RedisRateLimiter:
        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        return cls(client, prefix=prefix, clock=clock)

    def now(self) -> float:
        return self._clock()

    def _key(self, rule: BucketRule) -> str:
        return f"{self._prefix}{{{rule.tenant_id}}}:{rule.key}"

    async def acquire(self, checks: Sequence[BucketCheck], now: float) -> Admission:
        if not checks:
            return NOTHING_TO_CHECK
        admitted, levels = await self._run("acquire", [(c.rule, c.cost) for c in checks], now)
        admission = decide(checks, levels)
        if admission.admitted != admitted:  # the script and `decide` compare the same doubles: a bug if ever
            raise RuntimeError(f"rate-limit script and domain disagree on {[c.rule.key for c in checks]}")
        return admission

    async def settle(self, key_id: str | None, tenant_id: str, rules: RateRules, delta_tokens: int, now: float) -> None:
        tpm = tpm_rules(rules, tenant_id=tenant_id, key_id=key_id)
        if tpm and delta_tokens != 0:
            await self._run("settle", [(r, float(delta_tokens)) for r in tpm], now)

    async def _run(
        self, mode: str, buckets: Sequence[tuple[BucketRule, float]], now: float
    ) -> tuple[bool, list[float]]:
        """Run the script; returns whether it charged, and each bucket's level after refill (before the charge)."""
        args: list[str | int] = [mode, repr(now)]
        for rule, cost in buckets:
            args += [rule.capacity, repr(cost)]
        try:
            result = await self._script(keys=[self._key(rule) for rule, _ in buckets], args=args)
        except (redis.ConnectionError, redis.TimeoutError) as err:
            raise RateLimiterUnavailable(f"Redis is unavailable: {err}") from err
        return bool(result[0]), [float(level) for level in result[1:]]

    async def aclose(self) -> None:
        await self._client.aclose()
