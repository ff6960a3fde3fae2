"""The Snakemake HTML report of a real smoke run, opened in a real headless browser.

Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) driven by Playwright's Python API (Playwright's
own browser download is never used). The test clicks through the report like a user: the landing
page (workflow description, rule graph), each result category, the table, every figure, the data
file and the provenance page, and the statistics charts. It fails on any uncaught script error or
console error, and on any request that leaves the report file: the report embeds everything, so it
must work offline. Screenshots go to <pytest basetemp>/report-screenshots/ (printed; see them with
`pytest -rP` or `-s`), e.g. /tmp/pytest-of-$USER/pytest-current/report-screenshots/.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from PIL import Image

HAVE_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None
if HAVE_PLAYWRIGHT:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # Playwright's 5 s is tight on 2 busy shared cores
if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Error, Locator, Page, Request

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless as root on a closed network: without the background-networking flags Chromium keeps
# trying (and failing) to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
VIEWPORT = {"width": 1440, "height": 1000}
# Everything a self-contained report may load: itself and the data: URIs it embeds.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
CATEGORIES = ["Data", "Figures", "Provenance", "Tables"]
# Figure file (workflow/rules/aggregate.smk) -> the start of its label in the report's list.
FIGURES = {
    "fig2_components": "Fig. 2:", "fig3a_detection": "Fig. 3a:",
    "fig3b_tradeoff": "Fig. 3b:", "fig4_adaptive": "Fig. 4:", "fig5_convergence": "Fig. 5:",
}


def shorten(text: str) -> str:
    """Messages quote embedded data: URIs (up to megabytes): keep their start only."""
    return re.sub(r"(data:[^\s,;]+[;,][^\s]{0,40})[^\s)]*", r"\1...", text)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require(ok: bool, missing: str) -> None:
    """Skip locally when the browser stack is missing; in CI (CI=true) fail instead."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"{missing}. CI=true, so the report browser test must run: .ci/run apt-installs "
                    "chromium and `pip install -e '.[test]'` installs playwright.", pytrace=False)
    pytest.skip(missing)


@dataclass
class PageLog:
    """What the page reported while the test drove it."""

    errors: list[str] = field(default_factory=list)    # uncaught exceptions, console.error
    warnings: list[str] = field(default_factory=list)  # console.warn: shown, not failed on
    external: list[str] = field(default_factory=list)  # requests for anything not embedded

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "assert"}:
            self.errors.append(shorten(f"console.{message.type}: {message.text} ({message.location})"))
        elif message.type == "warning":
            self.warnings.append(message.text)

    def _page_error(self, error: Error) -> None:
        self.errors.append(shorten(f"uncaught {error.name}: {error.message}\n{error.stack}"))

    def _request(self, request: Request) -> None:
        if not request.url.startswith(LOCAL_SCHEMES):
            self.external.append(shorten(f"{request.method} {request.url}"))

    def assert_clean(self, step: str) -> None:
        assert not self.external, (f"{step}: the report requested files it should embed:\n"
                                   + "\n".join(self.external))
        assert not self.errors, f"{step}: script errors in the report:\n" + "\n".join(self.errors)


class Report:
    """The report's single-page app, driven through its navigation bar like a user would."""

    def __init__(self, page: Page, shots: Path):
        self.page = page
        self.shots = shots
        self.nav = page.locator("nav").first  # the side bar (breadcrumbs are a nav inside it)
        self.screenshots: list[Path] = []

    def menu(self) -> None:
        """Back to the main menu through the breadcrumb (the landing page has it already)."""
        back = self.nav.get_by_role("link", name="Results", exact=True)
        if back.count():
            back.click()

    def open_category(self, name: str) -> Locator:
        """Click a result category; its result list (one table row per result)."""
        self.menu()
        self.nav.get_by_role("link", name=name, exact=True).click()
        expect(self.nav.locator("nav")).to_contain_text(name)  # breadcrumbs: home > Results > name
        return self.nav.locator("tbody tr")

    @staticmethod
    def labels(rows: Locator) -> list[str]:
        return [text.strip() for text in rows.locator("td:first-child").all_inner_texts()]

    @staticmethod
    def view_button(row: Locator) -> Locator:
        """The eye button of a result row (the other one is the info button)."""
        return row.locator("a").nth(0)

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{len(self.screenshots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.screenshots.append(path)
        return path


def distinct_colours(png: Path) -> int:
    image = Image.open(png).convert("RGB")
    return len(image.getcolors(maxcolors=image.width * image.height))


@pytest.mark.slow
def test_report_opens_in_headless_chromium_and_shows_every_result(request, tmp_path_factory):
    require(CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK),
            f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set $CHROMIUM)")
    require(HAVE_PLAYWRIGHT, "Python package playwright is not installed (pip install -e '.[test]')")

    # Asked for only now, so that a missing browser skips/fails before the minutes-long smoke run.
    smoke_run = request.getfixturevalue("smoke_run")
    report_html = request.getfixturevalue("smoke_report")
    reports = smoke_run.reports
    shots = tmp_path_factory.mktemp("report-screenshots", numbered=False)
    print(f"\nscreenshots go to {shots}")
    start = time.perf_counter()
    log = PageLog()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                             headless=True)
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        page = context.new_page()
        log.attach(page)
        report = Report(page, shots)

        # Landing page: React rendered the app, the workflow description and the rule graph (Vega).
        page.goto(report_html.as_uri(), wait_until="load")  # every inline script has run
        log.assert_clean("loading the report")
        expect(report.nav).to_contain_text("Snakemake")
        expect(page.locator("#app")).to_contain_text("Reproduction of Mixup Inference")
        expect(page.locator("#app")).to_contain_text("run smoke")
        rulegraph = page.locator("#rulegraph canvas")
        expect(rulegraph).to_be_visible()
        assert rulegraph.bounding_box()["height"] > 100
        menu = [name for name in CATEGORIES
                if report.nav.get_by_role("link", name=name, exact=True).count()]
        assert menu == CATEGORIES, f"result categories in the menu: {menu}"
        report.screenshot("landing")
        log.assert_clean("rendering the landing page")

        # Tables: table2, opened in the content iframe, shows every method row of tables/table2.csv.
        rows = report.open_category("Tables")
        expect(rows).to_have_count(1)
        assert report.labels(rows) == ["table2"]
        report.view_button(rows.first).click()
        frame = page.frame_locator("iframe")
        expect(frame.locator("body")).to_contain_text("Mixup + MI-OL")
        expect(frame.locator("body")).to_contain_text("Accuracy (%)")
        methods = list(pd.read_csv(reports / "tables" / "table2.csv")["method"].drop_duplicates())
        shown = [text.strip() for text in frame.locator("table tbody tr th").all_inner_texts()]
        assert shown == methods, f"table2 in the report shows rows {shown}, tables/table2.csv has {methods}"
        assert page.locator("iframe").bounding_box()["height"] > 300
        report.screenshot("table2")
        log.assert_clean("opening table2")

        # Figures: the four figures are listed; each opens as an image that decoded and painted.
        rows = report.open_category("Figures")
        expect(rows).to_have_count(len(FIGURES))
        seen = {}
        for i, label in enumerate(report.labels(rows)):
            report.view_button(rows.nth(i)).click()
            image = page.locator('#app img[src^="data:image/"]:not([src*="filename=logo."])')
            expect(image).to_have_count(1)
            expect(image).to_be_visible()
            stem = re.search(r"filename=([^;]+)\.(png|svg);", image.get_attribute("src")).group(1)
            assert stem in FIGURES and label.startswith(FIGURES[stem]), (label, stem)
            page.wait_for_function("img => img.complete", arg=image.element_handle())
            width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width > 200 and height > 200, f"{stem}: the browser decoded it as {width}x{height}"
            crop = shots / f"figure-{stem}.png"
            image.screenshot(path=str(crop))
            assert distinct_colours(crop) > 50, f"{stem} painted as a (nearly) blank image: {crop}"
            seen[stem] = f"{label} -> {width}x{height}"
            report.screenshot(stem)
        assert set(seen) == set(FIGURES), seen
        log.assert_clean("opening the figures")

        # Data: results.csv is offered as a download, byte for byte the run's results.csv.
        rows = report.open_category("Data")
        expect(rows).to_have_count(1)
        assert report.labels(rows) == ["reports/smoke/results.csv"]
        with page.expect_download() as download:
            report.view_button(rows.first).click()
        assert download.value.suggested_filename == "results.csv"
        assert Path(download.value.path()).read_bytes() == (reports / "results.csv").read_bytes()
        log.assert_clean("downloading results.csv")

        # Provenance: the run's provenance page in the iframe.
        rows = report.open_category("Provenance")
        expect(rows).to_have_count(1)
        assert report.labels(rows) == ["reports/smoke/provenance.html"]
        report.view_button(rows.first).click()
        body = page.frame_locator("iframe").locator("body")
        for text in ("Run smoke", "git commit", "Packages", "Models"):
            expect(body).to_contain_text(text)
        report.screenshot("provenance")
        log.assert_clean("opening the provenance")

        # Statistics: the run-time and timeline charts (Vega) render.
        report.menu()
        report.nav.get_by_role("link", name="Statistics", exact=True).click()
        for chart in ("#runtimes canvas", "#timeline canvas"):
            expect(page.locator(chart)).to_be_visible()
        report.screenshot("statistics")
        log.assert_clean("opening the statistics")

        # Back to a figure for the closing screenshot: the navigation list and Fig. 3b.
        rows = report.open_category("Figures")
        report.view_button(rows.filter(has_text=FIGURES["fig3b_tradeoff"])).click()
        expect(page.locator('#app img[src*="filename=fig3b_tradeoff."]')).to_be_visible()
        final = report.screenshot("final-figures-fig3b")
        log.assert_clean("the whole session")
        browser.close()

    print(f"report browser test: {time.perf_counter() - start:.1f} s in Chromium "
          f"{CHROMIUM} (smoke run {smoke_run.seconds:.0f} s, shared)")
    print("figures:", "; ".join(seen.values()))
    print("console warnings (not failed on):", sorted(set(log.warnings)) or "none")
    print("screenshots:", *report.screenshots, sep="\n  ")
    print(f"main screenshot: {final}")
