"""An asyncio event loop on a thread of its own, for the PLC outputs' servers and clients.

pymodbus and asyncua are asyncio libraries, while the daemon is threads. Each PLC output runs its
protocol on its own loop, so a PLC that stalls a request stalls nothing but that loop; the output's
sender thread only posts work to it (:meth:`LoopThread.call`, which never waits). All state of
one output's handshake is touched on that loop only, so a PLC's request always sees a consistent
image.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoopThread:
    """Runs one event loop forever on a daemon thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = False

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                self.loop.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait for its result (TimeoutError after ``timeout``)."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"not done within {timeout:.1f} s") from None

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop without waiting (a no-op once the loop is closed)."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the output is shutting down
            log.debug("loop closed; dropped a call to %s", getattr(fn, "__name__", fn))

    def stop(self, timeout: float) -> bool:
        """Stop the loop (its tasks are cancelled) and join the thread; whether it ended in time."""
        if not self._started:
            self.loop.close()
            return True
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass
        self._thread.join(timeout)
        return not self._thread.is_alive()
