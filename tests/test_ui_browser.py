"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (SE_OFFLINE: Selenium downloads nothing). One browser for the session; the
server is `ledgerx ui` in a child process on 127.0.0.1, over a ledger written by the real writer
and indexed by `ledgerx rebuild`. The tests assert content and drawn charts (Plotly's SVG
traces), never pixels."""

from __future__ import annotations

import json
import os
import re
import shutil
from urllib.parse import urlparse

import pytest
from ui_support import REPO, UiServer, add_run, rebuild, wait_for, write_ledger

os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMEDRIVER) or not shutil.which("chromium"):
        pytest.fail("chromium and chromium-driver are missing: `make setup` installs them")
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--disable-gpu"):  # fmt: skip
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ui-browser") / "ledger"
    exp = write_ledger(root)
    rebuild(root)
    srv = UiServer(root, poll_ms=250)
    yield srv, root, exp
    srv.stop()


def load(driver, url: str) -> None:
    """Open `url` and wait until the page says its charts are drawn."""
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready") == "1", 20)


def row_ids(driver) -> list[str]:
    """The runs listed (read in one script: the live refresh may swap the rows meanwhile)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#runs-body tr[data-run-id]'))"
        ".map((tr) => tr.dataset.runId)"
    )


def traces(driver, chart: str, kind: str) -> int:
    """SVG traces Plotly drew in `#chart` (`kind`: scatterlayer, barlayer)."""
    return len(driver.find_elements(By.CSS_SELECTOR, f"#{chart}.js-plotly-plot .{kind} .trace"))


def test_runs_page_lists_every_run(browser, site):
    srv, _, exp = site
    load(browser, srv.base + "/")
    assert sorted(row_ids(browser)) == sorted(exp.runs)
    for rid, status in exp.runs.items():
        tr = browser.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{rid}"]')
        assert tr.get_attribute("data-status") == status
        assert tr.find_element(By.CSS_SELECTOR, ".status").text == status
    assert browser.find_element(By.ID, "runs-count").text == "5 of 5"


def test_click_opens_the_run_page_with_its_charts(browser, site):
    srv, _, exp = site
    load(browser, srv.base + "/")
    browser.find_element(By.CSS_SELECTOR, 'tr[data-run-id="sweep-0"] a.run-link').click()
    wait_for(lambda: browser.current_url.endswith("/runs/sweep-0"))
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready") == "1", 20)
    assert browser.find_element(By.ID, "run-status").text == "completed"
    assert traces(browser, "chart-gantt", "barlayer") == 1
    assert traces(browser, "chart-trials", "scatterlayer") == 2  # trials + best so far
    assert traces(browser, "chart-scatter", "scatterlayer") == 1
    assert traces(browser, "chart-curve-0", "scatterlayer") == 1
    n = len(exp.trials["sweep-0"])
    points = browser.find_elements(
        By.CSS_SELECTOR, "#chart-trials .scatterlayer .trace:first-child .points path"
    )
    assert len(points) == n
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-curve-0 .scatterlayer .js-line")
    trials = exp.trials["sweep-0"]
    best = max(trials, key=lambda t: t["metrics"]["pnl"])
    row = browser.find_element(By.CSS_SELECTOR, "#baselines-table tr.best")
    assert row.get_attribute("data-best-trial") == str(best["trial_id"])
    shown = [
        tr.get_attribute("data-trial-id")
        for tr in browser.find_elements(By.CSS_SELECTOR, "#trials-table tbody tr")
    ]
    want = sorted(trials, key=lambda t: (-t["metrics"]["pnl"], t["trial_id"]))
    assert shown == [str(t["trial_id"]) for t in want]


def test_a_retried_trial_is_drawn_and_listed_once(browser, site):
    srv, _, exp = site
    load(browser, srv.base + "/runs/sweep-2")
    trials = exp.trials["sweep-2"]  # 30 trials, 31 records: trial 5 recorded twice
    points = browser.find_elements(
        By.CSS_SELECTOR, "#chart-trials .scatterlayer .trace:first-child .points path"
    )
    assert len(points) == len(trials) == 30
    assert browser.find_element(By.ID, "n-trials").text == "30"
    assert "31 records" in browser.find_element(By.ID, "n-records").text
    shown = [
        tr.get_attribute("data-trial-id")
        for tr in browser.find_elements(By.CSS_SELECTOR, "#trials-table tbody tr")
    ]
    assert sorted(shown, key=int) == [str(k) for k in range(30)]
    best = browser.find_element(By.CSS_SELECTOR, "#baselines-table tr.best")
    assert best.get_attribute("data-best-trial") == "5" and "9.5" in best.text


def test_trials_table_sorts_on_click_and_scatter_follows_the_parameter(browser, site):
    srv, _, exp = site
    load(browser, srv.base + "/runs/sweep-1")
    browser.find_element(By.CSS_SELECTOR, '#trials-table a.sort[data-sort="param:slow"]').click()
    wait_for(lambda: "tsort=param" in browser.current_url)
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready") == "1", 20)
    shown = [
        tr.get_attribute("data-trial-id")
        for tr in browser.find_elements(By.CSS_SELECTOR, "#trials-table tbody tr")
    ]
    trials = exp.trials["sweep-1"]
    want = sorted(trials, key=lambda t: (-t["params"]["slow"], t["trial_id"]))
    assert shown == [str(t["trial_id"]) for t in want]
    Select(browser.find_element(By.ID, "param-select")).select_by_value("slow")
    wait_for(lambda: "against slow" in browser.find_element(By.ID, "chart-scatter").text)


def test_filters_narrow_the_list(browser, site):
    srv, _, _ = site
    load(browser, srv.base + "/")
    Select(browser.find_element(By.ID, "f-status")).select_by_value("failed")
    wait_for(lambda: "status=failed" in browser.current_url)
    wait_for(lambda: row_ids(browser) == ["bt-failed"])
    load(browser, srv.base + "/")
    Select(browser.find_element(By.ID, "f-kind")).select_by_value("sweep")
    wait_for(lambda: sorted(row_ids(browser)) == ["sweep-0", "sweep-1", "sweep-2"])
    tag = browser.find_element(By.ID, "f-tag")
    tag.send_keys("team=alpha")
    tag.submit()
    wait_for(lambda: sorted(row_ids(browser)) == ["sweep-0", "sweep-1"])
    load(browser, srv.base + "/")
    q = browser.find_element(By.ID, "f-q")
    q.send_keys("running")
    q.submit()
    wait_for(lambda: row_ids(browser) == ["bt-running"])


def test_compare_selected_runs(browser, site):
    srv, _, _ = site
    load(browser, srv.base + "/")
    for rid in ("sweep-0", "sweep-2"):
        browser.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{rid}"] input.pick').click()
    browser.find_element(By.ID, "compare-btn").click()
    wait_for(lambda: "/compare?runs=" in browser.current_url)
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready") == "1", 20)
    heads = browser.find_elements(By.CSS_SELECTOR, "#compare-config th[data-run-id]")
    assert sorted(h.get_attribute("data-run-id") for h in heads) == ["sweep-0", "sweep-2"]
    grid = browser.find_element(By.CSS_SELECTOR, '#compare-config tr[data-key="grid"]')
    assert "differs" in grid.get_attribute("class")
    assert traces(browser, "chart-compare", "barlayer") == 2


def test_alerts_and_status_pages(browser, site):
    srv, root, _ = site
    load(browser, srv.base + "/alerts")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-alert-id="a-1"]')
    assert "drawdown over limit" in row.text and "sweep-1" in row.text
    load(browser, srv.base + "/status")
    lines = sum(p.read_bytes().count(b"\n") for p in (root / "events").rglob("part-*.jsonl"))
    assert browser.find_element(By.ID, "indexed-events").text == str(lines)
    assert browser.find_element(By.ID, "lag").text.startswith("0 events")


def test_a_late_run_appears_without_reloading(browser, site):
    srv, root, _ = site
    load(browser, srv.base + "/")
    browser.execute_script("window.__sameDocument = 42")
    wait_for(lambda: browser.execute_script("return document.body.dataset.indexVersion"))
    add_run(root, "late-run")
    rebuild(root)
    wait_for(lambda: "late-run" in row_ids(browser), timeout=15)
    assert browser.execute_script("return window.__sameDocument") == 42  # no reload
    assert browser.find_element(By.ID, "runs-count").text == "6 of 6"


def test_no_console_error_and_no_request_beyond_the_server(browser, site):
    srv, _, _ = site
    browser.get_log("browser")  # drop what earlier tests left
    browser.get_log("performance")
    pages = ["/", "/runs/sweep-0", "/runs/bt-failed", "/runs/bt-running",
             "/compare?runs=sweep-0,sweep-1", "/alerts", "/status"]  # fmt: skip
    for p in pages:
        load(browser, srv.base + p)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    server = urlparse(srv.base)
    urls = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert any(u.endswith("/static/plotly.min.js") for u in urls)
    foreign = [
        u for u in urls
        if urlparse(u).scheme not in ("data", "blob", "about")
        and (urlparse(u).hostname, urlparse(u).port) != (server.hostname, server.port)
    ]  # fmt: skip
    assert foreign == []


def test_the_screenshot_script_photographs_the_main_pages(browser, site, tmp_path):
    """`make screenshots` (docs/screenshots.py) on this session's browser and server: five
    PNGs of the pages' full width, the pages ready when taken. Last: it resizes the window."""
    import importlib.util
    import struct

    srv, _, _ = site
    spec = importlib.util.spec_from_file_location("screenshots", REPO / "docs/screenshots.py")
    assert spec and spec.loader
    shots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shots)
    try:
        paths = shots.shoot_all(browser, srv.base, ["sweep-0", "sweep-1", "sweep-2"], tmp_path)
    finally:
        browser.set_window_size(1400, 1000)
    names = ["ui-runs.png", "ui-run.png", "ui-compare.png", "ui-status.png", "ui-alerts.png"]
    assert [p.name for p in paths] == names
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", p
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
        assert width == shots.WIDTH and height > 300, (p, width, height)
    for p in sorted((REPO / "docs" / "images").glob("ui-*.png")):  # the committed ones
        assert p.name in {q.name for q in paths}
    for doc in ("README.md", "docs/ui.md"):  # every screenshot the docs show is committed
        for ref in re.findall(r"\(((?:docs/)?images/ui-[\w-]+\.png)\)", (REPO / doc).read_text()):
            assert (REPO / ("docs/" + ref if ref.startswith("images") else ref)).is_file(), ref
