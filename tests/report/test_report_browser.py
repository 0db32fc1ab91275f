"""``report.html`` checked as a person would: opened from disk in headless Chromium, offline.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them) and selenium; skipped with
the reason where they are absent. The page is loaded from file:// with the network cut (no DNS,
a dead proxy, and DevTools' offline mode), so anything it tried to fetch would fail to load.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from slimkit.report import Report, write_report

pytestmark = pytest.mark.browser

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium driven by chromedriver, with every network route cut."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2200",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no DNS: any host fails to resolve
        "--proxy-server=127.0.0.1:9",  # and any connection goes to a closed port
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(60)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        yield driver
    finally:
        driver.quit()


def _column(driver: Any, key: str) -> tuple[int, list[str], list[str]]:
    """The index of column ``key``, its cells' sort values and the row names, in page order."""
    return driver.execute_script(
        """
        const table = document.getElementById("candidates-table");
        const headers = Array.from(table.tHead.rows[0].cells);
        const index = headers.findIndex(th => th.dataset.key === arguments[0]);
        const rows = Array.from(table.tBodies[0].rows);
        return [index, rows.map(r => r.cells[index].getAttribute("data-sort")),
                rows.map(r => r.cells[0].textContent)];
        """,
        key,
    )


def test_report_opens_offline_plots_load_and_the_table_sorts(
    browser: Any, report_factory: Callable[..., Report], tmp_path: Path
) -> None:
    report = report_factory(complete=False)
    run_dir = tmp_path / "run"
    page = write_report(report, run_dir)["report.html"]
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return location.protocol") == "file:"
    assert browser.title == f"slimkit report: {report.name}"

    # the plots: every <img> decoded to real pixels (a broken image has naturalWidth 0)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth]);"
    )
    assert [i[0] for i in images] == ["plot-latency", "plot-size"]
    assert all(complete and width > 300 for _, complete, width in images), images
    # nothing came from the network: every fetched resource is a file: or data: URL
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
    status = browser.find_element("id", "run-status").text
    assert status == "INCOMPLETE: interrupted run, 2 of 5 stages finished"

    # one row per candidate, in report order
    _, _, names = _column(browser, "accuracy")
    assert names == [c.name for c in report.candidates]

    # click "accuracy": ascending (the failed candidate, with no accuracy, last); again: descending
    measured = sorted(
        (c for c in report.candidates if c.accuracy is not None), key=lambda c: c.accuracy or 0.0
    )
    failed = [c.name for c in report.candidates if c.accuracy is None]
    header = browser.find_element("css selector", '#candidates-table th[data-key="accuracy"]')
    header.click()
    _, values, names = _column(browser, "accuracy")
    assert names == [c.name for c in measured] + failed
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers) and values[-1] == ""
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    _, values, names = _column(browser, "accuracy")
    assert names == [c.name for c in reversed(measured)] + failed
    assert header.get_attribute("aria-sort") == "descending"

    # a text column sorts too: names ascending
    browser.find_element("css selector", '#candidates-table th[data-key="name"]').click()
    _, _, names = _column(browser, "name")
    assert names == sorted(names, key=str.casefold)

    # the per-candidate details open on click
    details = browser.find_element("id", "candidate-1")
    details.find_element("tag name", "summary").click()
    assert details.get_attribute("open") is not None
    assert "calibration: mse" in details.text

    screenshot = run_dir / "screenshot.png"
    assert browser.save_screenshot(str(screenshot))
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", data[16:20])[0] > 0
