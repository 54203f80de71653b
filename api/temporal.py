"""The API process's Temporal client, and the worker that runs on it."""

from __future__ import annotations

from starlette.datastructures import State
from temporalio.client import Client

from client.connect import connect
from worker import api_worker


async def connect_temporal(state: State) -> Client:
    """The app's Temporal client, connected on first use, with the API's own worker started on it
    (`Settings.api_worker`): the server hands an eagerly started job only to a worker of the client that
    started it. Both stop with the app (`state.lifetime`).

    Raises:
        TemporalUnavailable: the server cannot be reached (a 503); the next request tries again.
    """
    if state.temporal is None:
        async with state.temporal_lock:
            if state.temporal is None:
                # With the API's worker, history names this process (`… api`) beside each task it ran.
                client = await connect(state.settings, role="api" if state.settings.api_worker else None)
                if state.settings.api_worker:
                    worker = api_worker(
                        client,
                        state.settings,
                        state.engine,
                        flags=state.flags,
                        policies=state.policies,
                        rate_limiter=getattr(state, "rate_limiter", None),
                    )
                    state.api_worker = await state.lifetime.enter_async_context(worker)
                state.temporal = client
    return state.temporal  # type: ignore[no-any-return]
