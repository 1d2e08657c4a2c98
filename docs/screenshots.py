"""Refresh the dashboard screenshots in docs/images/ (`make screenshots`).

Writes the demo ledger (`python -m ledgerx.demo`) into a temporary root, serves it with
`ledgerx ui --port 0`, and photographs the main pages in headless Debian chromium (the same
browser and driver the tests use; `make setup` installs them)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

OUT = Path(__file__).resolve().parent / "images"
WIDTH = 1400


def shoot(driver: webdriver.Chrome, url: str, path: Path, max_height: int = 2200) -> None:
    driver.set_window_size(WIDTH, 900)
    driver.get(url)
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.body.dataset.ready") != "1":
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: {url} never became ready")
        time.sleep(0.1)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(max_height, height + 20))
    time.sleep(0.5)  # let the responsive charts settle at the new size
    driver.save_screenshot(str(path))
    print(f"screenshots: wrote {path}")


def shoot_all(driver: webdriver.Chrome, base: str, done: list[str], out: Path) -> list[Path]:
    """The five main pages (`done`: completed run ids, the first is photographed), as PNGs in
    `out`. tests/test_ui_browser.py runs this against its own server."""
    shots = [
        ("ui-runs.png", "/", 2200),
        ("ui-run.png", f"/runs/{done[0]}", 3200),
        ("ui-compare.png", f"/compare?runs={','.join(done[:3])}", 2200),
        ("ui-status.png", "/status", 2200),
        ("ui-alerts.png", "/alerts", 2200),
    ]
    for name, path, height in shots:
        shoot(driver, base + path, out / name, max_height=height)
    return [out / name for name, _, _ in shots]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ledgerx-shots-") as tmp:
        root = Path(tmp) / "demo-ledger"
        env = {**os.environ, "LEDGERX_ROOT": str(root)}
        subprocess.run([sys.executable, "-m", "ledgerx.demo"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "ledgerx", "ui", "--root", str(root), "--port", "0"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            base = re.search(r"on (http://\S+)/ ", server.stdout.readline()).group(1)  # type: ignore[union-attr]
            with urllib.request.urlopen(f"{base}/api/runs?sort=run_id&dir=asc") as r:
                runs = json.load(r)["runs"]
            done = [r["run_id"] for r in runs if r["status"] == "completed"]
            opts = webdriver.ChromeOptions()
            for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                      "--hide-scrollbars", f"--window-size={WIDTH},900"):  # fmt: skip
                opts.add_argument(a)
            driver = webdriver.Chrome(
                service=Service(executable_path="/usr/bin/chromedriver"), options=opts
            )
            try:
                shoot_all(driver, base, done, OUT)
            finally:
                driver.quit()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
