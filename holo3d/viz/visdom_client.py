"""A visdom client whose every HTTP request has a time limit.

visdom's own ``Visdom`` posts through a ``requests.Session`` without a timeout, so a server that
accepts connections but never answers would hang the posting thread forever. Its ``session``
property is the single place the session is made, so overriding it is enough. The client only
posts, so it also opens no event socket.
"""

from __future__ import annotations

from typing import Any, Optional

import requests


class TimeoutSession(requests.Session):
    """A session that applies ``timeout_s`` to requests that do not set their own."""

    def __init__(self, timeout_s: float):
        super().__init__()
        self.timeout_s = timeout_s
        self.trust_env = False  # loopback dashboards must not be routed through a proxy

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(*args, **kwargs)


_client_class: Optional[type] = None


def _timed_visdom_class() -> type:
    """Built on first use: importing visdom costs ~1 s and is only needed when it is chosen."""
    global _client_class
    if _client_class is None:
        import visdom

        class TimedVisdom(visdom.Visdom):
            def __init__(self, *args: Any, timeout_s: float = 5.0, **kwargs: Any):
                self.timeout_s = timeout_s  # set first: the base __init__ already posts
                super().__init__(*args, **kwargs)

            def setup_socket(self) -> None:
                # Post-only client: no event socket, whose thread would also make the base
                # __init__ wait 5 s for it on a dead server.
                self.use_socket = False

            @property
            def session(self) -> requests.Session:
                if self._session is None:
                    self._session = TimeoutSession(self.timeout_s)
                return self._session

        _client_class = TimedVisdom
    return _client_class


def connect_visdom(server: str, port: int, env: str, timeout_s: float = 5.0) -> Any:
    """A connected client for ``env``; raises ``ConnectionError`` if the server does not answer."""
    cls = _timed_visdom_class()
    return cls(server=server, port=port, env=env, raise_exceptions=True, timeout_s=timeout_s)
