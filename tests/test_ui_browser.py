"""The Dagster UI as a person sees it, in a real browser: Debian's Chromium (`make test` installs it) driven by
Playwright, headless, against `dagster-webserver` on 127.0.0.1 over a temporary instance with one delivered
day (the `platform` and `webserver` fixtures of conftest.py). Screenshots of every step are saved under
test-output/ui/ (look at them when a test fails)."""

import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from dagster_servers import PLATFORM_DAY as DAY
from deliveries import DEMO_RAW_KEYS
from governance.catalog import load_catalog
from platform_assets.settings import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright cannot download its own browser here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SCREENSHOTS = REPO_ROOT / "test-output" / "ui"
GROUPS = ["raw", "cleaned", "features", "ml", "consumers"]  # the layers, and who reads them
RUN_SECONDS = 240
UI_SECONDS = 30  # the longest the UI may take to show something that is there


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    # Tall enough that the asset catalog renders every row of a layer (the list only renders what is visible).
    context = browser.new_context(viewport={"width": 1600, "height": 2400})
    context.set_default_timeout(UI_SECONDS * 1000)
    tab = context.new_page()
    # The UI invites to its community once per instance, a second after the first page has loaded: skip it
    # whenever it shows up in front of what the test is doing.
    tab.add_locator_handler(tab.get_by_role("button", name="Skip"), lambda skip: skip.click())
    yield tab
    context.close()


_community_popup_seen = False


def _open(page: Page, url: str) -> None:
    """Go to a page; on the very first visit, wait for the community pop-up and skip it so that it does not
    cover the first screenshot."""
    global _community_popup_seen
    page.goto(url)
    if not _community_popup_seen:
        _community_popup_seen = True
        skip = page.get_by_role("button", name="Skip")
        try:
            skip.wait_for(state="visible", timeout=10_000)
            skip.click()
        except PlaywrightTimeoutError:  # not shown: this instance has already had it
            pass
        expect(skip).to_be_hidden()


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _catalog_links(page: Page, base: str, selection: str, first: str) -> list[str]:
    """Every link of the asset catalog's rows for a selection (`*`, `owner:"team"`), once `first` is listed."""
    _open(page, f"{base}/assets?asset-selection={urllib.parse.quote(selection)}")
    expect(page.locator(f'a[href="/assets/{first}"]').first).to_be_visible()
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
    return [urllib.parse.unquote(href) for href in hrefs]


def test_the_asset_graph_shows_every_layer_and_every_owner_team(webserver, page):
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert sorted(set(groups.values())) == sorted(GROUPS)
    _open(page, f"{webserver}/asset-groups")
    for layer in GROUPS:
        expect(page.get_by_text(layer, exact=True).first).to_be_visible()
    _shot(page, "01-asset-graph")

    # The catalog lists every asset once, each with a link to its layer's group: /asset-groups~group:"raw"/raw/flights
    links = _catalog_links(page, webserver, "*", "raw/flights")
    listed = dict(re.fullmatch(r'/asset-groups~group:"([^"]+)"/(.+)', href).groups()[::-1]
                  for href in links if href.startswith("/asset-groups~group:"))
    assert listed == groups
    _shot(page, "02-asset-catalog")

    catalog = load_catalog()
    consumers = {f"consumers/{name}": c for name, c in catalog.consumers.items() if c.asset is None}
    for team in sorted({dataset.owner for dataset in catalog.datasets.values()}):  # the teams that own data
        expected = sorted(key for key, dataset in catalog.datasets.items() if dataset.owner == team)
        expected += sorted(key for key, consumer in consumers.items() if consumer.owner == team)
        # Dagster shows a `team:<name>` owner as <name>.
        links = _catalog_links(page, webserver, f'owner:"{team}"', expected[0])
        assert {href.removeprefix("/assets/") for href in links if href.startswith("/assets/")} == set(expected), team
    _shot(page, "03-catalog-owned-by-passenger-data")

    # Who reads a dataset is in its lineage: everything downstream of marts/bookings includes its consumers.
    links = _catalog_links(page, webserver, 'key:"marts/bookings"+', "marts/bookings")
    readers = {key for key, consumer in consumers.items() if "marts/bookings" in consumer.depends_on}
    assert readers and readers <= {href.removeprefix("/assets/") for href in links if href.startswith("/assets/")}


def test_materialize_a_partition_from_the_ui_and_read_its_checks(webserver, platform, page):
    instance = dg.DagsterInstance.from_config(str(platform.dagster_home))
    runs_before = {run.run_id for run in instance.get_runs()}

    # The raw layer, one day: lineage filtered to the demo's raw sources -> Materialize all -> the partition ->
    # launch (a source a user adds, which the simulator does not deliver, stays out of the selection).
    selection = " or ".join(f'key:"{key.to_user_string()}"' for key in DEMO_RAW_KEYS)
    _open(page, f"{webserver}/asset-groups~" + urllib.parse.quote(selection, safe=""))
    _shot(page, "04-demo-raw-selection")
    page.get_by_role("button", name="Materialize all…").click()
    partitions = page.get_by_placeholder("ex: 2013-01-01", exact=False)
    partitions.fill(DAY)
    partitions.press("Enter")
    _shot(page, "04-launch-dialog")
    page.get_by_role("button", name="Launch 1 run").click()

    deadline = time.monotonic() + RUN_SECONDS
    while not (new := [run for run in instance.get_runs() if run.run_id not in runs_before]) or \
            not new[0].is_finished:
        assert time.monotonic() < deadline, f"no finished run from the UI after {RUN_SECONDS} s: {new}"
        time.sleep(2)
    run = new[0]
    assert len(new) == 1 and run.tags.get("dagster/partition") == DAY
    assert set(run.asset_selection) == set(DEMO_RAW_KEYS)
    _open(page, f"{webserver}/runs/{run.run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    _shot(page, "05-run-succeeded")
    assert run.status == dg.DagsterRunStatus.SUCCESS

    # What the run left on the asset page: description, owner, tags, kind, column docs, row count.
    from platform_assets.sources.definitions import SOURCES

    flights = SOURCES["flights"]
    dataset = load_catalog().dataset("raw/flights")
    with duckdb.connect(str(platform.warehouse_path), read_only=True) as connection:
        rows = connection.execute("SELECT count(*) FROM raw.flights").fetchall()[0][0]
    _open(page, f"{webserver}/assets/raw/flights")
    for text in (flights.description[:60], dataset.owner, f"classification: {dataset.classification}",
                 f"domain: {dataset.domain}", "DuckDB", flights.columns["dep_time"].description, f"{rows:,}"):
        expect(page.get_by_text(text, exact=False).first).to_be_visible()
    _shot(page, "06-asset-overview")

    # Its checks: the blocking contract passed, and the known gaps show their failing examples as a table.
    _open(page, f"{webserver}/assets/raw/flights?view=checks")
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    expect(page.get_by_text(f"published (version", exact=False)).to_be_visible()
    _shot(page, "07-checks-contract")
    page.get_by_text("contract_known_gaps", exact=True).first.click()
    page.get_by_text("[Show Markdown]").first.click()
    examples = page.get_by_role("dialog")
    expect(examples.get_by_role("cell", name="flights.tailnum references planes.tailnum")).to_be_visible()
    expect(examples.get_by_text(f"flights_{DAY}.csv row", exact=False).first).to_be_visible()
    _shot(page, "08-checks-known-gaps-examples")


# Needs `governance report --out FILE.html` (the governance catalog issue); fails until that verb exists.
def test_the_governance_report_renders(platform, page):
    report = platform.data_dir / "governance" / "report.html"
    command = subprocess.run([sys.executable, "-m", "governance.cli", "report", "--out", str(report)],
                             cwd=REPO_ROOT, env={**os.environ, "PLATFORM_DATA_DIR": str(platform.data_dir)},
                             capture_output=True, text=True, timeout=120)
    assert command.returncode == 0, command.stderr
    page.goto(report.as_uri())
    assert "governance report" in page.title().lower()
    expect(page.locator("h1").first).to_be_visible()
    datasets = page.locator("h2", has_text="Datasets").locator("xpath=following-sibling::table[1]")
    expect(datasets).to_be_visible()
    for key in load_catalog().datasets:
        expect(datasets.get_by_text(key, exact=True).first).to_be_visible()
    lineage = page.locator("svg").first
    expect(lineage).to_be_visible()
    box = lineage.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 100, box
    _shot(page, "09-governance-report")
