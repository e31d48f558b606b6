"""The facility board in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright,
against the real server (waitress, in a thread, on 127.0.0.1 and a free port; stopped in the
fixture's finalizer). Overview, a trend page, a certificate and a run whose journal grows while its
page is open (the progress changes without a reload). Full-page screenshots go to
test-output/board/ at the repository root (CI keeps them). A missing Chromium fails the test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.board.app import create_app
from harness.board.policy import read_policy
from harness.cli.board_commands import serve_app
from tests import board_db

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "board"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> board_db.Facility:
    return board_db.build(tmp_path_factory.mktemp("facility"))


@pytest.fixture(scope="module")
def board(facility: board_db.Facility) -> Iterator[str]:
    """The real server, token-protected, on a free loopback port; its URL (without the token)."""
    app = create_app(facility.url, read_policy(facility.policy), token="browser-token", now=lambda: board_db.NOW)
    server = serve_app(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(board: str) -> Iterator[Any]:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install chromium (the browser test needs Debian's Chromium)"
    from playwright.sync_api import sync_playwright  # the browser driver: only this module needs it

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            outside: list[str] = []

            def only_the_board(route: Any) -> None:
                if route.request.url.startswith(board):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", only_the_board)
            tab = context.new_page()
            tab.goto(f"{board}/?token=browser-token")  # the token once; a cookie from then on
            yield tab
            assert not outside, f"the board asked for resources elsewhere: {outside}"
        finally:
            browser.close()


def test_overview(page: Any, board: str) -> None:
    page.goto(f"{board}/")
    assert "token" not in page.url
    matrix = page.locator("#matrix")
    assert matrix.is_visible()
    row_c = matrix.locator("tr", has_text="Scope C")
    assert "overdue" in row_c.inner_text() and "fail" in row_c.inner_text() and "not applicable" in row_c.inner_text()
    assert "never run" in matrix.locator("tr", has_text="Scope A").inner_text()
    assert page.locator("#running").is_visible() and page.locator("#out-of-control").is_visible()
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)


def test_microscope_and_run_pages(page: Any, board: str, facility: board_db.Facility) -> None:
    page.goto(f"{board}/")
    page.locator("#matrix a", has_text="Scope B").click()  # a link of the overview, followed
    assert page.locator("h1").inner_text() == "Scope B"
    assert page.locator("figure svg").count() >= 4 and "never run" in page.locator("#checks").inner_text()
    page.screenshot(path=str(SHOTS / "microscope.png"), full_page=True)
    page.goto(f"{board}/runs/{facility.warn_run}")
    assert "warn" in page.locator("#metrics").inner_text()
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)
    page.locator("#report").click()
    assert "report.html" in page.url and page.locator("h1").count() >= 1  # the run's own report, from its folder


def test_trend_page(page: Any, board: str) -> None:
    page.goto(f"{board}/trends/stability_pct?subject=488 nm&protocol=power-stability-short")
    figures = page.locator("figure.trend")
    assert figures.count() == 3
    assert [figures.nth(i).locator("figcaption b").inner_text() for i in range(3)] == ["Scope A", "Scope B", "Scope C"]
    assert figures.nth(1).locator("svg circle.flagged").count() >= 1  # Scope B's drop is ringed
    box = figures.nth(0).locator("svg").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 150  # drawn, not collapsed
    page.screenshot(path=str(SHOTS / "trend-stability_pct.png"), full_page=True)


def test_certificate(page: Any, board: str) -> None:
    page.goto(f"{board}/certificate?microscope=Scope B&from=2026-09-20&to=2026-10-10")
    assert "Quality control certificate" in page.locator("h1").inner_text()
    assert "1 of 5 checks in this period did not pass" in page.locator("#statement").inner_text()
    assert page.locator("table.cert-metrics").count() == 5
    page.screenshot(path=str(SHOTS / "certificate.png"), full_page=True)
    page.emulate_media(media="print")
    assert not page.locator("header").is_visible()  # the print layout drops the navigation
    page.pdf(path=str(SHOTS / "certificate.pdf"), format="A4")
    page.emulate_media(media="screen")
    assert (SHOTS / "certificate.pdf").read_bytes()[:5] == b"%PDF-"


def test_live_progress_without_reload(page: Any, board: str, facility: board_db.Facility) -> None:
    page.goto(f"{board}/runs/{facility.running_id}")
    bar = page.locator("#live [role=progressbar]")
    before = float(bar.get_attribute("aria-valuenow"))
    page.evaluate("window.notReloaded = true")
    board_db.grow_journal(facility, 900)
    after = before
    for _ in range(120):  # the page polls every second; read what it shows (no script of ours: the page's CSP forbids eval)
        page.wait_for_timeout(250)
        after = float(bar.get_attribute("aria-valuenow"))
        if after > before:
            break
    assert after > before
    assert page.evaluate("window.notReloaded === true")  # the same document: updated in place
    assert "ETA" in page.locator("#live .progress-text").inner_text()
    page.screenshot(path=str(SHOTS / "run-progress.png"), full_page=True)
