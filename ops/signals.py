"""SIGINT and SIGTERM as a flag that `kintsugi up` checks between steps."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


class StopFlag:
    """Set by SIGINT or SIGTERM instead of raising wherever the signal lands, so no step (starting a process,
    an event loop waiting for Temporal) is cut in half; the waits check it between polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> StopFlag:
        def handler(signum: int, frame: FrameType | None) -> None:
            self._event.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        return self

    def check(self) -> None:
        if self._event.is_set():
            raise Stopped

    def sleep(self, seconds: float) -> None:
        """Like `time.sleep`, but a signal ends it at once."""
        if self._event.wait(seconds):
            raise Stopped
