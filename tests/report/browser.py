"""Real, headless browsers for the report tests.  Chromium: load a file from ``file://``
with the network blocked, wait for the scripts, and give back the DOM, the console
messages and, when asked, a screenshot.  Firefox: a screenshot of the file, from a fresh
profile whose network goes nowhere (Firefox has no DOM dump; what its scripts did is read
from the pixels).  Screenshots are decoded with zlib: no imaging dependency.

Both must be installed (``.ci/run`` installs Debian's ``chromium`` and ``firefox-esr``
when they are missing); a missing browser fails the tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FIREFOX_CANDIDATES = ("firefox-esr", "firefox")
FIREFOX_PREFS = {
    # every connection goes to a closed local port, and no name is ever resolved
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "",
    "network.dns.disabled": True,
    "network.captive-portal-service.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "app.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
}
CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] \"(?P<message>.*)\", source: (?P<source>.*)$")


def chromium() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no Chromium found (apt-get install -y chromium; .ci/run does it)")


def firefox() -> str:
    for name in FIREFOX_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no Firefox found (apt-get install -y firefox-esr; .ci/run does it)")


def firefox_screenshot(path: Path, *, width: int = 1000, height: int = 700, timeout: float = 90) -> bytes:
    """A headless Firefox's screenshot of ``path`` (a local file), taken once the page has
    loaded and its scripts ran, from a fresh profile with the network blocked."""
    assert path.is_file(), path  # Firefox waits forever on a missing file
    with tempfile.TemporaryDirectory(prefix="report-firefox-") as home:
        profile = Path(home) / "profile"
        profile.mkdir()
        (profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(key)}, {json.dumps(value)});\n" for key, value in FIREFOX_PREFS.items())
        )
        target = Path(home) / "shot.png"
        env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MOZ_HEADLESS": "1"}
        proc = subprocess.run(
            [
                firefox(),
                "--headless",
                "--no-remote",
                "--profile",
                str(profile),
                f"--window-size={width},{height}",
                "--screenshot",
                str(target),
                path.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        assert proc.returncode == 0 and target.exists(), proc.stderr[-2000:]
        return target.read_bytes()


@dataclass
class Page:
    dom: str
    console: list[str]
    """Console messages of the page (errors, CSP violations, logs)."""
    seconds: float
    """From the browser's start to the DOM dump (load, scripts, layout)."""
    screenshot: bytes | None = None


def load(path: Path, *, screenshot: bool = False, width: int = 1300, height: int = 1600, timeout: float = 60) -> Page:
    """Open ``path`` (a local file) headless; dump the DOM after the scripts ran (and take a
    screenshot when asked: a second, separate load)."""
    with tempfile.TemporaryDirectory(prefix="report-browser-") as profile:
        base = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={width},{height}",
            "--virtual-time-budget=2000",
        ]
        url = path.resolve().as_uri()
        started = time.monotonic()
        proc = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr[-2000:]
        console = [m.group("message") for m in map(CONSOLE.search, proc.stderr.splitlines()) if m]
        shot = None
        if screenshot:
            target = Path(profile) / "shot.png"
            subprocess.run([*base, f"--screenshot={target}", url], capture_output=True, timeout=timeout, check=True)
            shot = target.read_bytes()
    return Page(proc.stdout, console, seconds, shot)


def png_colours(png: bytes, step: int = 3) -> int:
    """How many distinct colours an 8-bit RGB(A) PNG has (sampled): a blank page has one or two."""
    return len(png_palette(png, step))


def png_palette(png: bytes, step: int = 3) -> set[bytes]:
    """The distinct RGB colours of an 8-bit RGB(A) PNG (every ``step``-th pixel of every
    ``step``-th row)."""
    bpp, rows = png_rows(png)
    return {bytes(row[x : x + 3]) for row in rows[::step] for x in range(0, len(row), bpp * step)}


def png_rows(png: bytes) -> tuple[int, list[bytes]]:
    """An 8-bit RGB(A) PNG decoded: bytes per pixel, and each row's pixels, unfiltered."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = depth = colour = 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        chunk = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    rows: list[bytes] = []
    for y in range(height):
        row_start = y * (stride + 1)
        kind = raw[row_start]
        row = bytearray(raw[row_start + 1 : row_start + 1 + stride])
        for i in range(stride):  # undo the PNG filter of this row
            left = row[i - bpp] if i >= bpp else 0
            up = previous[i]
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                up_left = previous[i - bpp] if i >= bpp else 0
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(bytes(row))
        previous = row
    return bpp, rows


def without_scripts(path: Path) -> Path:
    """A copy of the page with its scripts removed: what a browser with JavaScript off
    shows (Chromium's own switch for that also stops ``--dump-dom`` and ``--screenshot``)."""
    html = path.read_text(encoding="utf-8")
    stripped = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)
    assert "<script" not in stripped
    target = path.with_name(path.stem + ".nojs.html")
    target.write_text(stripped, encoding="utf-8")
    return target
