"""Reading a report page in tests: the cells of an HTML table, and headless Chromium (or a skip naming what is
missing, a failure instead when EDGEPRUNE_REQUIRE_BROWSER=1)."""
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REQUIRE_BROWSER = "EDGEPRUNE_REQUIRE_BROWSER"
WINDOW = (1200, 2000)  # CSS px, device scale factor 1


class TableCells(HTMLParser):
    """The text of every cell of the table with a given id, row by row."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows = table_id, False, []

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def table(html: str, table_id: str) -> list[list[str]]:
    parser = TableCells(table_id)
    parser.feed(html)
    return parser.rows


def missing_browser() -> str | None:
    """What is missing for headless Chromium through selenium, with the command that installs it; None if nothing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not CHROMIUM.is_file():
        return f"chromium is not installed ({CHROMIUM} missing): apt-get install chromium chromium-driver"
    if not CHROMEDRIVER.is_file():
        return (f"chromium is installed but chromedriver is not ({CHROMEDRIVER} missing): "
                "apt-get install chromium-driver")
    return None


def chrome():
    """Headless Debian Chromium through selenium. When something is missing: a skip naming it, or a failure when
    EDGEPRUNE_REQUIRE_BROWSER=1 (CI sets it, so that the page tests cannot silently skip there)."""
    missing = missing_browser()
    if missing:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{missing} ({REQUIRE_BROWSER}=1: the browser tests must run)")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # explicit paths: selenium-manager never looks anything up
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--force-device-scale-factor=1",
                "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
