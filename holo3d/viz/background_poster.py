"""Delivers log items to a server from a background thread, so training never waits on the network.

The caller's ``submit`` only appends to a bounded queue (the oldest item is dropped when full).
A daemon worker connects lazily, delivers whatever is pending as one batch, and when the server is
unreachable logs ONE warning, drops what it cannot send and tries to reconnect only every
``retry_after_s`` (a dashboard started after training began still fills up).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, List, Optional

log = logging.getLogger(__name__)


class BackgroundPoster:
    """``connect() -> client`` and ``deliver(client, batch)`` run on the worker thread only."""

    def __init__(self, connect: Callable[[], Any], deliver: Callable[[Any, List[Any]], None],
                 description: str, max_pending: int = 512, retry_after_s: float = 30.0):
        self._connect = connect
        self._deliver = deliver
        self._description = description
        self._retry_after_s = retry_after_s
        self._pending: collections.deque = collections.deque(maxlen=max_pending)
        self._wakeup = threading.Condition()
        self._closing = False
        self._client: Optional[Any] = None
        self._retry_at = 0.0
        self.warned = False
        self.dropped = 0  # items never delivered (queue overflow or server unreachable)
        self.delivered = 0
        self._worker = threading.Thread(target=self._run, name=f"poster:{description}", daemon=True)
        self._worker.start()

    def submit(self, item: Any) -> None:
        """Queues ``item``; O(1), never blocks, never raises."""
        with self._wakeup:
            if self._closing:
                return
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1  # deque(maxlen) evicts the oldest on append
            self._pending.append(item)
            self._wakeup.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Lets the worker deliver what is pending, waiting at most ``timeout_s``."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._worker.join(timeout_s)

    @property
    def connected(self) -> bool:
        return self._client is not None

    def _next_batch(self) -> Optional[List[Any]]:
        """Everything pending, waiting for at least one item; None once closed and drained."""
        with self._wakeup:
            while not self._pending and not self._closing:
                self._wakeup.wait()
            if not self._pending:
                return None
            batch = list(self._pending)
            self._pending.clear()
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if self._client is None and not self._try_connect():
                self._count_dropped(len(batch))
                continue
            try:
                self._deliver(self._client, batch)
                self.delivered += len(batch)
            except Exception as exc:  # noqa: BLE001 (whatever the client raises, training goes on)
                self._count_dropped(len(batch))
                self._mark_unreachable(exc)

    def _count_dropped(self, n: int) -> None:
        with self._wakeup:  # submit() counts overflow drops under the same lock
            self.dropped += n

    def _try_connect(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._client = self._connect()
            return True
        except Exception as exc:  # noqa: BLE001
            self._mark_unreachable(exc)
            return False

    def _mark_unreachable(self, exc: BaseException) -> None:
        self._client = None
        self._retry_at = time.monotonic() + self._retry_after_s
        if not self.warned:
            self.warned = True
            log.warning("%s is unreachable (%s: %s); dropping its log posts, training continues "
                        "(retrying every %.0f s, no further warnings)", self._description,
                        type(exc).__name__, exc, self._retry_after_s)
