"""Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``): real
mouse clicks and key presses into a page, its DOM read back, screenshots; no WebDriver, no websocket library.

Chromium reads JSON messages from its fd 3 and writes to its fd 4, each ending with a NUL byte.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip
KEYS = {"Enter": ("Enter", 13, "\r"), "Escape": ("Escape", 27, ""), " ": ("Space", 32, " ")}


class Browser:
    def __init__(self, profile: Path, width: int = 1100, height: int = 760, timeout_s: float = 30.0) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
        self.timeout_s = timeout_s
        to_chrome, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome = os.pipe()
        command = [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_chrome} 4>&{from_chrome}', "chromium", *command],
            pass_fds=(to_chrome, from_chrome), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(profile)},
        )  # fmt: skip
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict[str, Any]:
        """One DevTools command and its result; events that arrive meanwhile are passed over."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail("chromium stopped answering on its DevTools pipe")
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
            if not ready:
                continue
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                pytest.fail("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_until("document.readyState === 'complete'", what=f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, what: str = "the page", timeout: float | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + (timeout or self.timeout_s)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what} ({expression})")
            time.sleep(0.05)

    def click(self, selector: str, *, ctrl: bool = False, shift: bool = False) -> None:
        """A real left click at the middle of the first element ``selector`` matches."""
        box = self.wait_until(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()",
            what=selector,
        )
        modifiers = (2 if ctrl else 0) | (8 if shift else 0)
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1, "modifiers": modifiers},
            )

    def press(self, key: str) -> None:
        """A key press as a keyboard makes it: ``"u"``, ``"3"``, ``"Enter"``, ``"Escape"``, ``" "``."""
        if key in KEYS:
            code, virtual, text = KEYS[key]
        else:
            code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
            virtual, text = ord(key.upper()), key
        event = {"key": key, "code": code, "windowsVirtualKeyCode": virtual, "text": text}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", **event})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **event})

    def type(self, text: str) -> None:
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
            self.process.wait(10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, pytest.fail.Exception):
            self.process.kill()
            self.process.wait(10)
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)
