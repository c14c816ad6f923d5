"""The dashboard in a real browser (Debian's Chromium through Playwright): a site and a month range
selected show the accuracy and audit count the warehouse holds (counted again here from
`qa_core.audits_clean`), and a month runs and publishes while the dashboard is open and reloading."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from qa_pipeline.dashboard.serve import command
from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline_tests.conftest import Pipeline

FIRST_MONTH, LATER_MONTH = "2026-01", "2026-02"
RELOAD_MS = 3000


def _chromium() -> str:
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(path):
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed under CI (.ci/run installs Debian's chromium)")
    pytest.skip("no chromium on this machine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, sample_raw):
    """A month through the whole pipeline (the dashboard snapshot included), and the dashboard
    served from it on a free loopback port."""
    root = tmp_path_factory.mktemp("dashboard")
    raw = root / "raw"
    shutil.copytree(sample_raw, raw)
    p = Pipeline(root, raw)
    assert p.run(FIRST_MONTH).success
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("QA_DASHBOARD_DIR", "QA_DASHBOARD_URL")}
    env["QA_REPORTS_DIR"] = str(root / "reports")
    log = (root / "streamlit.log").open("w")
    server = subprocess.Popen(command(port), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"the dashboard did not start: {(root / 'streamlit.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield p, url
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
    dispose_engines()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else __import__(
        "playwright.sync_api", fromlist=["sync_playwright"])
    path = _chromium()
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems, requests = [], []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="load")
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=30_000)
    return page, problems, requests


def _pick(page, label: str, option: str) -> None:
    """Choose an option of a sidebar selectbox or multiselect by its label, as a user does."""
    sidebar = page.get_by_test_id("stSidebar")
    widget = sidebar.locator("[data-testid=stSelectbox], [data-testid=stMultiSelect]").filter(
        has=page.get_by_text(label, exact=True))
    widget.locator("input").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def _settled(page) -> None:
    page.wait_for_timeout(300)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=30_000)


@pytest.fixture(scope="module")
def run_while_open(dashboard, browser):
    """The next month run while a page reloads the dashboard in a frame every 3 s: the run's result
    and how many times the dashboard loaded during it."""
    p, url = dashboard
    page = browser.new_page()
    page.set_content(
        "<iframe id=d style='width:1200px;height:800px'></iframe><script>"
        "window.loads = 0; const d = document.getElementById('d'); d.onload = () => window.loads++;"
        f"d.src = '{url}'; setInterval(() => {{ d.src = '{url}/?r=' + Date.now(); }}, {RELOAD_MS});</script>")
    page.wait_for_function("window.loads >= 1", timeout=30_000)
    before = page.evaluate("window.loads")
    result = p.run(LATER_MONTH)
    during = page.evaluate("window.loads") - before
    # the frame shows figures right after the run (not an error page)
    page.frame_locator("#d").get_by_test_id("stMetricValue").first.wait_for(timeout=30_000)
    page.close()
    return result, during


def test_a_month_runs_and_publishes_while_the_dashboard_is_open_and_reloading(dashboard, browser, run_while_open):
    p, url = dashboard
    result, during = run_while_open
    assert result.success
    assert during >= 2, f"the dashboard was reloaded {during} time(s) during the run"
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["snapshot_matches_warehouse"] is True
    # the refreshed snapshot is what the open dashboard shows now
    page, problems, _ = _open(browser, url)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("To month", exact=True)).locator(
        "input").click()
    page.get_by_role("option", name=LATER_MONTH, exact=True).wait_for(timeout=30_000)
    assert problems == []
    page.close()


def test_a_site_and_month_range_show_the_accuracy_and_audits_the_warehouse_holds(dashboard, browser, run_while_open):
    p, url = dashboard
    audits = p.table("qa_core.audits_clean")
    months = sorted(audits["month"].dt.strftime("%Y-%m").unique())
    first, last = FIRST_MONTH, LATER_MONTH
    assert months == [first, last]
    site = sorted(audits["site"].unique())[1]
    page, problems, requests = _open(browser, url)
    _pick(page, "Site", site)
    _settled(page)
    _pick(page, "From month", first)
    _settled(page)
    _pick(page, "To month", last)
    _settled(page)
    page.get_by_text(f"{first} to {last}", exact=False).first.wait_for(timeout=30_000)
    page.get_by_text(f"Site: {site}", exact=True).first.wait_for(timeout=30_000)
    values = page.get_by_test_id("stMetricValue").all_inner_texts()
    # the warehouse's answer, counted again from the audit rows
    chosen = audits[(audits["site"] == site) & audits["month"].dt.strftime("%Y-%m").between(first, last)]
    n, errors = len(chosen), int(chosen["is_error_final"].sum())
    assert n > 0 and chosen["month"].nunique() == 2
    assert values[:3] == [f"{1 - errors / n:.2%}", f"{n:,}", f"{errors:,}"], values
    # and another month range gives another count (the selection is applied, not decorative)
    other = audits[(audits["site"] == site) & (audits["month"].dt.strftime("%Y-%m") == last)]
    _pick(page, "From month", last)
    _settled(page)
    page.get_by_text(f"{last} to {last}", exact=False).first.wait_for(timeout=30_000)
    assert page.get_by_test_id("stMetricValue").all_inner_texts()[1] == f"{len(other):,}"
    assert problems == [] and page.get_by_test_id("stException").count() == 0
    assert all(u.startswith((url, "data:", "blob:", "about:")) for u in requests), \
        [u for u in requests if not u.startswith(url)][:5]  # nothing from the network
    page.close()
