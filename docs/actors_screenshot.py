"""Screenshot of the Ray dashboard's Actors page during `sspa-ray ablate --dashboard` (docs/dashboard-actors.png).

Runs the module ablation on a small synthetic benchmark with the dashboard on, waits until trials
run, signs headless Chromium in with the token (the `ray-authentication-token` cookie, through the
DevTools protocol) and captures the page. Needs Debian's `chromium`.

    python docs/actors_screenshot.py [--out docs/dashboard-actors.png]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

COOKIE = "ray-authentication-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return json.loads(response.read())


async def _capture(devtools: str, url: str, token: str, width: int, height: int) -> bytes:
    import aiohttp

    target = next(t for t in _get(f"{devtools}/json/list") if t["type"] == "page")
    async with aiohttp.ClientSession() as session, session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
        ids = iter(range(1, 1000))

        async def call(method: str, **params):
            message_id = next(ids)
            await ws.send_json({"id": message_id, "method": method, "params": params})
            async for message in ws:
                data = json.loads(message.data)
                if data.get("id") == message_id:
                    return data.get("result", {})

        await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        await call("Network.enable")
        await call("Network.setCookie", name=COOKIE, value=token, url=url)
        await call("Page.navigate", url=f"{url}/#/actors")
        await asyncio.sleep(12)  # the page polls the state API; let the table fill
        shot = await call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("dashboard-actors.png"))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sspa-shot-"))
    log = tmp / "driver.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as sink:
        driver = subprocess.Popen([sys.executable, "-m", "sspa_ray.cli.main", "ablate", "--target", "synthetic",
                                   "--dashboard", "--out", str(tmp / "exp"), "--set", "data.synthetic_scale=0.3",
                                   "--set", "train.epochs=6", "--set", "train.selection_epochs=3"],
                                  stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    browser = None
    try:
        while not (match := re.search(r"Ray dashboard: (http://\S+)", log.read_text())):
            assert driver.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        url = match.group(1)
        token = (Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")).read_text().strip()
        # Wait until several trials have named actors on the page.
        while True:
            assert driver.poll() is None, log.read_text()[-3000:]
            actors = _get(f"{url}/api/v0/actors?detail=1&limit=100", token)["data"]["result"]["result"]
            if sum(a["class_name"] == "SspaTrial" and bool(a["repr_name"]) for a in actors) >= 3:
                break
            time.sleep(2)
        port = _free_port()
        browser = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                                    f"--remote-debugging-port={port}", f"--user-data-dir={tmp / 'chromium'}",
                                    "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        devtools = f"http://127.0.0.1:{port}"
        for _ in range(60):
            try:
                _get(f"{devtools}/json/version")
                break
            except OSError:
                time.sleep(0.5)
        args.out.write_bytes(asyncio.run(_capture(devtools, url, token, args.width, args.height)))
        print(f"wrote {args.out}")
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(10)
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGINT)
            try:
                driver.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(driver.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
