"""Waiting until something serves: a free port, a listening port, an HTTP 200, a Temporal frontend.

Each wait polls until a deadline and calls `check` between polls, so a caller aborts at once when the process
it waits for has died (`Child.check`) or when it was asked to stop.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import httpx

POLL_S = 0.2
ATTEMPT_TIMEOUT_S = 2.0
"""One connection attempt; a server that is still starting may accept and then not answer."""


def _nothing() -> None:
    return None


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice; another process may take it before we bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout_s: float = 30.0, check: Callable[[], None] = _nothing) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        check()
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s") from None
            time.sleep(POLL_S)


def wait_http_ok(url: str, *, timeout_s: float = 60.0, check: Callable[[], None] = _nothing) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        check()
        try:
            response = httpx.get(url, timeout=ATTEMPT_TIMEOUT_S)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as err:
            last = repr(err)
        time.sleep(POLL_S)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s (last: {last})")


def wait_temporal(
    address: str,
    namespace: str,
    task_queue: str | None = None,
    *,
    timeout_s: float = 30.0,
    check: Callable[[], None] = _nothing,
) -> None:
    """Until a client connects and `namespace` exists (and, with `task_queue`, until a worker polls it)."""
    asyncio.run(_wait_temporal(address, namespace, task_queue, timeout_s, check))


async def _wait_temporal(
    address: str, namespace: str, task_queue: str | None, timeout_s: float, check: Callable[[], None]
) -> None:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
    from temporalio.client import Client
    from temporalio.service import RPCError

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        check()
        try:
            client = await asyncio.wait_for(Client.connect(address, namespace=namespace), ATTEMPT_TIMEOUT_S)
            service = client.workflow_service
            describe = DescribeNamespaceRequest(namespace=namespace)
            await asyncio.wait_for(service.describe_namespace(describe), ATTEMPT_TIMEOUT_S)
            if task_queue is None:
                return
            request = DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
            response = await asyncio.wait_for(service.describe_task_queue(request), ATTEMPT_TIMEOUT_S)
            if response.pollers:
                return
            last = f"no worker polls task queue {task_queue!r} yet"
        # Not up yet. The bridge reports a refused connection as a bare RuntimeError (it has no typed error);
        # a frontend that is still starting answers with an RPCError or not at all (TimeoutError).
        except (RuntimeError, RPCError, TimeoutError) as err:
            last = repr(err)
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"Temporal at {address} not ready within {timeout_s:.0f} s: {last}")
