"""The web view in a real browser: Debian's Chromium driven by Selenium (through Debian's chromedriver, never
a downloaded one) against the team service as a real process (`python -m respmon alerts-api` on a free port)
on a fresh database with a synthetic cohort in two care teams.

Screenshots of every page go to `tests/browser/output/` (gitignored); with `RESPMON_SCREENSHOTS=docs/screenshots`
the inbox and patient page are also written there, for the README.
"""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from alerts.sessions import set_password
from alerts.team import add_member
from respmon.launcher import service
from respmon.testing.cohort import Cohort, seed
from tests.conftest import ROOT, free_port, namespace

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
OUTPUT = Path(__file__).resolve().parent / "output"
PASSWORD = "correct horse battery staple"
NORTH, SOUTH = "north", "south"
MEMBERS = (("nurse-north", NORTH, "clinician"), ("viewer-north", NORTH, "viewer"), ("nurse-south", SOUTH, "clinician"))
T = TypeVar("T")


@dataclass(frozen=True)
class Site:
    """The running team service and what its database holds."""

    url: str
    db_url: str
    north: Cohort  # patients NORTH-xxxxx in team `north`: nurse-north and viewer-north see them
    south: Cohort  # patients SOUTH-xxxxx in team `south`: nurse-south sees them
    logs: Path


@pytest.fixture(scope="session")
def site(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fresh database with 12 north patients over two years (3 high and 3 warn alerts) and 6 south patients,
    three members with PASSWORD, and the team service serving it."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are missing: run infra/browser.sh (make test does)")
    with namespace(tmp_path_factory.mktemp("browser-worker")) as env:
        url = env["RESPMON_DATABASE_URL"]
        with psycopg.connect(url, autocommit=True) as conn:
            north = seed(conn, 12, 730, team=NORTH, prefix="NORTH", seed_value=17)
            south = seed(conn, 6, 400, team=SOUTH, prefix="SOUTH", seed_value=22)
            for member, team, role in MEMBERS:
                add_member(conn, member, team, role, "tests")  # type: ignore[arg-type]
                set_password(conn, member, PASSWORD)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        logs = tmp_path_factory.mktemp("browser-logs")
        served = {**env, "RESPMON_ALERTS_API_PORT": str(port), "RESPMON_PUBLIC_BASE_URL": base}
        with service(["alerts-api"], served, f"{base}/healthz", logs / "alerts-api.log"):
            yield Site(base, url, north, south, logs)


@pytest.fixture(scope="session")
def output() -> Path:
    """This run's screenshots and downloads (emptied at the start of the run)."""
    shutil.rmtree(OUTPUT, ignore_errors=True)
    (OUTPUT / "downloads").mkdir(parents=True)
    return OUTPUT


@pytest.fixture(scope="session")
def chromium(output: Path) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the run; each test starts without cookies (`browser`)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                "--disable-dev-shm-usage", "--lang=en-GB"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP refusals, script errors
    options.add_experimental_option("prefs", {
        "download.default_directory": str(output / "downloads"), "download.prompt_for_download": False,
        "plugins.always_open_pdf_externally": True})  # a PDF link downloads instead of opening the viewer
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)  # explicit: no selenium-manager
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow",
                                                           "downloadPath": str(output / "downloads")})
    try:
        yield driver
    finally:
        driver.quit()


class Browser:
    """What a test does with the browser, in a user's words: open a page, log in, find, wait, screenshot."""

    def __init__(self, driver: webdriver.Chrome, site: Site, output: Path) -> None:
        self.driver, self.site, self.output = driver, site, output

    def open(self, path: str) -> None:
        self.driver.get(self.site.url + path)

    @property
    def path(self) -> str:
        """The current address without the site's origin (query included)."""
        return str(self.driver.current_url).removeprefix(self.site.url)

    def login(self, member_id: str, password: str = PASSWORD, path: str = "/") -> None:
        """Through the form, as a person would (the field labels, the button), then on to `path`."""
        self.open(f"/login?{urlencode({'next': path})}")
        self.fill("Member id", member_id)
        self.fill("Password", password)
        self.find("form.login button[type=submit]").click()
        self.wait(lambda d: "/login" not in d.current_url and d.find_elements(By.CSS_SELECTOR, "form.logout"),
                  "a page of the member after login")

    def fill(self, label: str, text: str) -> None:
        """Type into the input that the label with this text names."""
        target = self.driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']").get_attribute("for")
        field = self.driver.find_element(By.ID, str(target))
        field.clear()
        field.send_keys(text)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait(self, until: Callable[[Any], T | None], what: str, timeout_s: float = 20) -> T:
        """Wait for a condition of the page (htmx swaps, chart drawing, downloads); fail naming `what`."""
        try:
            found = WebDriverWait(self.driver, timeout_s, poll_frequency=0.1,  # an htmx swap replaces elements
                                  ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                                  ).until(until)
        except TimeoutException:
            self.shot(f"timeout-{int(time.time())}")
            raise AssertionError(f"waited {timeout_s:.0f}s for {what}; now at {self.path}") from None
        assert found is not None  # until() returns a truthy value only
        return found

    def status(self, path: str) -> int:
        """The HTTP status of a page for this browser's session (Selenium does not tell statuses)."""
        cookies = {c["name"]: c["value"] for c in self.driver.get_cookies()}
        return httpx.get(self.site.url + path, cookies=cookies, headers={"Accept": "text/html"},
                         follow_redirects=False, timeout=30).status_code

    def heading(self) -> str:
        """The page's h1, once the page has one (a click's navigation may still be loading)."""
        return str(self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "main h1").text, "a heading"))

    def shot(self, name: str, readme: bool = False) -> Path:
        """A screenshot of the whole page under the run's output; with `readme`, also the top of the page
        (one 1400 x 1000 window) under $RESPMON_SCREENSHOTS, the README's pictures."""
        folder = os.environ.get("RESPMON_SCREENSHOTS")
        if readme and folder:
            readme_dir = Path(folder) if Path(folder).is_absolute() else ROOT / folder
            readme_dir.mkdir(parents=True, exist_ok=True)
            self.driver.execute_script("window.scrollTo(0, 0);")
            self.driver.save_screenshot(str(readme_dir / f"{name}.png"))
        self._fit_page()
        target = self.output / f"{name}.png"
        self.driver.save_screenshot(str(target))
        self.driver.set_window_size(1400, 1000)
        return target

    def _fit_page(self) -> None:
        """Grow the window to the page's height so that one screenshot holds all of it (capped)."""
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        self.driver.set_window_size(1400, max(1000, min(height + 140, 6000)))


@pytest.fixture
def browser(chromium: webdriver.Chrome, site: Site, output: Path) -> Iterator[Browser]:
    """The browser at the site with no session (cookies cleared); after the test, the console must hold no
    error: no script blocked by the Content-Security-Policy, no script failing."""
    chromium.get(site.url + "/login")
    chromium.delete_all_cookies()
    chromium.get_log("browser")  # what earlier tests left
    yield Browser(chromium, site, output)
    errors = [entry["message"] for entry in chromium.get_log("browser")
              if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]]
    assert not errors, f"errors in the browser console: {errors}"


@pytest.fixture
def db(site: Site) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(site.db_url, autocommit=True) as conn:
        yield conn
