"""A headless Chromium driven over the DevTools protocol, for the dashboard's browser test.

Uses only Debian's ``chromium`` and ``websocket-client`` (already a visdom dependency): no
chromedriver, no Selenium, nothing fetched at run time. The page is polled until a JavaScript
condition holds, so the test waits for visdom's React/Plotly rendering instead of guessing a delay.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import websocket

# Flags: headless, no sandbox (CI runs as root), and nothing that phones home or updates itself.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return None


class HeadlessChromium:
    """``with HeadlessChromium(exe, profile_dir) as browser: browser.navigate(url) ...``"""

    def __init__(self, executable: str, profile_dir: Path, size=(1400, 1600)):
        self.executable = executable
        self.profile_dir = Path(profile_dir)
        self.size = size
        self._proc: Optional[subprocess.Popen] = None
        self._ws: Optional[websocket.WebSocket] = None
        self._ids = itertools.count(1)
        self.console_errors: list[str] = []

    def __enter__(self) -> "HeadlessChromium":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        cmd = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile_dir}",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
               f"--window-size={self.size[0]},{self.size[1]}", "about:blank"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._wait_for_devtools_port(timeout)
        target = self._page_target(port, timeout)
        # Without an Origin header Chromium accepts the connection (it rejects foreign origins).
        self._ws = websocket.create_connection(target, timeout=timeout, suppress_origin=True)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _wait_for_devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it picked into <profile>/DevToolsActivePort."""
        marker = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self._proc.returncode}")
            if marker.is_file() and (lines := marker.read_text().split()):
                return int(lines[0])
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    @staticmethod
    def _page_target(port: int, timeout: float) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            targets = json.load(r)
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def call(self, method: str, **params: Any) -> dict:
        """Sends one DevTools command and returns its result (events in between are skipped)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("method") == "Runtime.exceptionThrown":
                self.console_errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, poll_s: float = 0.25) -> Any:
        """Polls ``expression`` until it is truthy; returns its value or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(poll_s)
        raise TimeoutError(f"page never satisfied {expression!r} (last value {value!r})")

    def wait_until_stable(self, expression: str, settle_s: float = 0.6,
                          timeout: float = 15.0) -> Any:
        """Polls ``expression`` until its value stays the same for ``settle_s`` (e.g. a layout
        that animates into place); returns that value."""
        deadline = time.monotonic() + timeout
        last, since = object(), time.monotonic()
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value != last:
                last, since = value, time.monotonic()
            elif time.monotonic() - since >= settle_s:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{expression!r} kept changing for {timeout} s")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self._ws is not None:
            try:
                self.call("Browser.close")
            except Exception:  # noqa: BLE001 (already gone is fine)
                pass
            self._ws.close()
            self._ws = None
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
