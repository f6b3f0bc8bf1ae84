"""Headless Chromium for the tests' screenshots of web pages (Label Studio's labelling page, MLflow's
run comparison): driven over the DevTools protocol on a pipe (fds 3/4), so no extra Python package.
Debian's ``chromium`` package provides the browser (``apt-get install -y chromium``)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Optional


def find_chromium() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3/4): no extra Python package."""

    def __init__(self, executable: str, profile: Path) -> None:
        # The child's ends are moved above fd 9 first, so that bash's 3<& and 4>& cannot clobber them.
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _above_nine(to_chrome_r), _above_nine(from_chrome_w)
        command = ["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', executable, "--headless=new",
                   "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-pipe",
                   f"--user-data-dir={profile}", "about:blank"]
        self.log = profile.parent / "chromium.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, pass_fds=(to_chrome_r, from_chrome_w), stdout=log, stderr=log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next, self._buffer = 0, b""

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                    raise TimeoutError(f"chromium did not answer {method}")
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _above_nine(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


def capture(executable: str, profile: Path, url: str, out: Path, ready: str, *, probe: str = "null",
            width: int = 1400, height: int = 900, cookies: Optional[dict] = None,
            prepare: Optional[str] = None) -> tuple[str, object]:
    """Open ``url`` (with ``cookies`` for its site), wait until the JavaScript expression ``ready`` is true,
    run the JavaScript ``prepare`` (close a panel, say), save a PNG of the page as ``out``; return the URL
    the page ended on and the value of the expression ``probe`` on the page as captured. A page that never
    gets ready is an AssertionError, with its picture beside ``out``."""
    browser = Chromium(executable, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Network.enable", session=session)
        site = "{0.scheme}://{0.netloc}/".format(urllib.parse.urlsplit(url))
        for name, value in (cookies or {}).items():
            browser.send("Network.setCookie", {"name": name, "value": value, "url": site}, session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = browser.send("Runtime.evaluate", {"expression": ready, "returnByValue": True}, session=session)
            if found.get("result", {}).get("value") is True:
                break
            time.sleep(0.5)
        else:
            shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
            out.with_suffix(".failed.png").write_bytes(base64.b64decode(shot["data"]))
            raise AssertionError(f"the page did not render (see {out.with_suffix('.failed.png')}): {ready}")
        if prepare:
            browser.send("Runtime.evaluate", {"expression": prepare}, session=session)
        time.sleep(2)  # let images and the layout settle
        where, seen = (browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                    session=session)["result"].get("value") for expression in ("location.href", probe))
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        out.write_bytes(base64.b64decode(shot["data"]))
        return where, seen
    finally:
        browser.close()
