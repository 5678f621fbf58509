"""The console in a real browser (Debian's chromium driven by Playwright) against the API over
the real Elasticsearch: alerts made by the real parsers and Sigma engine from the rules'
example lines (``tests/support/console.py``), users of each role in the user store.

Each test leaves a screenshot of its page in ``test-artifacts/console/``; every test checks
that the page asked nothing of another origin, got no 5xx, and logged no error nor warning (a
text missing in the chosen language is one).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.users import ElasticsearchUserStore
from socpipe.elastic import make_elasticsearch
from socpipe.settings import Role, Settings
from tests.support.browser import ARGS, ensure_chromium
from tests.support.console import (
    PASSWORD,
    SHORT_AGENCY,
    SILENT_COLLECTOR,
    ConsoleServer,
    Seeded,
    seed,
    settings_for,
)
from tests.support.services import Endpoints

pytestmark = [pytest.mark.browser, pytest.mark.elasticsearch, pytest.mark.kafka, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
# Pages worth seeing whole in the docs; the others at 1366×768.
FULL_PAGES = ("alert", "dashboard", "collectors")
SSH_FAILURE = (
    "0bf5816a-a6b8-4bc5-957a-c74e7ce82d3f"  # rules/socpipe/linux/sshd_authentication_failure
)


@pytest.fixture(scope="module")
def settings(endpoints: Endpoints) -> Iterator[Settings]:
    prefix = f"t-console-{uuid.uuid4().hex[:8]}"
    settings = settings_for(endpoints.elasticsearch_url, prefix, kafka=endpoints.kafka_bootstrap)
    yield settings
    client = make_elasticsearch(settings.elasticsearch)
    client.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
    client.close()


@pytest.fixture(scope="module")
def es(settings: Settings) -> Iterator[Elasticsearch]:
    client = make_elasticsearch(settings.elasticsearch)
    yield client
    client.close()


@pytest.fixture(scope="module")
def seeded(settings: Settings) -> Seeded:
    return seed(settings)


@pytest.fixture(scope="module")
def server(settings: Settings, seeded: Seeded) -> Iterator[ConsoleServer]:
    with ConsoleServer(settings) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        yield launched
        launched.close()


class Watch:
    """What a page asked of the network and said on its console."""

    def __init__(self, page: Page, origin: str) -> None:
        self.origin = origin
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        # The browser logs every 4xx as a failed resource: those are the API's answers to what
        # a user got wrong (a wrong password), which the page shows; 5xx are caught below.
        if message.type in ("error", "warning") and "Failed to load resource" not in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.problems.append(f"{response.status} from {response.url}")

    def check(self) -> None:
        elsewhere = [url for url in self.requests if not url.startswith(self.origin)]
        assert not elsewhere, f"requests outside the console's origin: {elsewhere}"
        assert not self.problems, self.problems


@pytest.fixture
def page(browser: Browser, server: ConsoleServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    opened = context.new_page()
    watch = Watch(opened, server.url.rstrip("/"))
    yield opened
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    # A text missing in the chosen language is a console warning (i18n.js): check() fails on it.
    watch.check()


def sign_in(page: Page, server: ConsoleServer, user: str, at: str = "") -> None:
    page.goto(server.url + at)
    page.get_by_label("Tên đăng nhập").fill(user)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    expect(page.locator("header .who")).to_contain_text(user)


def token(server: ConsoleServer, user: str) -> dict[str, str]:
    answer = httpx.post(server.url + "auth/token", json={"username": user, "password": PASSWORD})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def api_get(server: ConsoleServer, user: str, path: str, **params: Any) -> Any:
    answer = httpx.get(server.url + path, params=params, headers=token(server, user), timeout=30)
    answer.raise_for_status()
    return answer.json()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.1)


def queue_rows(page: Page) -> Any:
    return page.locator("table.data tbody tr[data-id]")


# --- tests ----------------------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_password_then_opens_the_queue(
    page: Page, server: ConsoleServer, seeded: Seeded
) -> None:
    page.goto(server.url)
    page.get_by_label("Tên đăng nhập").fill("lan.nguyen")
    page.get_by_label("Mật khẩu").fill("không đúng mật khẩu")
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Sai tên đăng nhập hoặc mật khẩu")
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    expect(page.get_by_role("heading", name="Hàng đợi cảnh báo")).to_be_visible()
    expect(queue_rows(page)).to_have_count(min(50, seeded.alerts))
    expect(page.get_by_text(f"/ {seeded.alerts} cảnh báo")).to_be_visible()
    # An analyst sees the triage navigation but not the audit trail.
    expect(page.get_by_role("link", name="Vụ việc")).to_be_visible()
    expect(page.get_by_role("link", name="Nhật ký thao tác")).to_have_count(0)


def test_filters_narrow_the_queue_as_the_api_does(page: Page, server: ConsoleServer) -> None:
    sign_in(page, server, "lan.nguyen")
    page.get_by_role("checkbox", name="Cao", exact=True).check()
    page.get_by_label("Cấp").select_option("commune")
    page.get_by_role("button", name="Áp dụng").click()
    expect(page).to_have_url(re.compile(r"severity=high.*tier=commune"))
    expected = api_get(
        server, "lan.nguyen", "alerts", severity="high", tier="commune", limit=500,
        since="2000-01-01T00:00:00Z",
    )  # fmt: skip
    assert 0 < expected["total"] < 50
    expect(queue_rows(page)).to_have_count(expected["total"])
    expect(page.locator("tbody .badge.sev-high")).to_have_count(expected["total"])
    assert set(
        page.locator("tbody tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.id)")
    ) == {alert["id"] for alert in expected["data"]}
    # The filters are in the address: a reload keeps them.
    page.reload()
    expect(page.get_by_role("checkbox", name="Cao", exact=True)).to_be_checked()
    expect(queue_rows(page)).to_have_count(expected["total"])


def test_an_alert_shows_its_events_rule_and_changes_status(
    page: Page, server: ConsoleServer
) -> None:
    sign_in(page, server, "lan.nguyen", "#/alerts?q=SSH authentication failure&severity=medium")
    first = queue_rows(page).first
    alert_id = first.get_attribute("data-id")
    first.get_by_role("link").click()
    alert = api_get(server, "lan.nguyen", f"alerts/{alert_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(alert["rule"]["title"])
    original = alert["events"][0]["event"]["original"]
    expect(page.locator("pre.original").first).to_have_text(original)
    expect(page.locator(".ecs-group h4", has_text="source")).to_be_visible()
    for technique in alert["rule"]["techniques"]:
        expect(page.get_by_role("region", name="Luật phát hiện")).to_contain_text(technique)
    page.get_by_role("button", name="Xác nhận tiếp nhận").click()
    expect(page.locator("h1 .badge.st-acknowledged")).to_have_text("Đã tiếp nhận")
    page.get_by_role("textbox", name="Ghi chú").fill("Đã gọi điện cho quản trị viên của đơn vị.")
    page.get_by_role("button", name="Thêm ghi chú").click()
    expect(page.get_by_role("region", name="Ghi chú").locator("ol.timeline")).to_contain_text(
        "Đã gọi điện cho quản trị viên của đơn vị."
    )
    stored = api_get(server, "lan.nguyen", f"alerts/{alert_id}")
    assert stored["status"] == "acknowledged"
    assert [(h["by"], h["action"]) for h in stored["history"][-2:]] == [
        ("lan.nguyen", "status_changed"),
        ("lan.nguyen", "commented"),
    ]
    assert stored["notes"][-1]["text"] == "Đã gọi điện cho quản trị viên của đơn vị."


def test_the_change_is_in_the_audit_view(page: Page, server: ConsoleServer) -> None:
    # An analyst resolves an alert through the API...
    alert = api_get(server, "lan.nguyen", "alerts", q="FortiGate", limit=1)["data"][0]
    changed = httpx.patch(
        server.url + f"alerts/{alert['id']}",
        json={"status": "resolved", "verdict": "benign_positive", "reason": "quét định kỳ"},
        headers=token(server, "lan.nguyen"),
    )
    assert changed.status_code == 200, changed.text
    # ...and an admin finds it in the audit trail.
    sign_in(page, server, "quan.tri", "#/audit")
    page.get_by_label("Thao tác", exact=True).fill("update_alert")
    page.get_by_role("button", name="Áp dụng").click()
    row = page.locator("tbody tr", has_text=alert["id"])

    def shown() -> bool:  # the trail is searchable within its index's refresh (1 s)
        if row.count() == 1:
            return True
        page.get_by_role("button", name="Làm mới").click()
        page.wait_for_load_state("networkidle")
        return False

    wait_for(shown, "the change in the audit view")
    expect(row).to_contain_text("lan.nguyen")
    expect(row).to_contain_text("Thành công")
    expect(row).to_contain_text('"status": "resolved"'.replace(" ", ""))


def test_language_switches_and_is_remembered_for_the_user(
    page: Page, server: ConsoleServer, settings: Settings, es: Elasticsearch
) -> None:
    users = ElasticsearchUserStore(es, settings.elasticsearch.index_prefix)
    if users.get("minh.tran") is None:
        users.add("minh.tran", PASSWORD, Role.ANALYST)
    sign_in(page, server, "minh.tran")
    expect(page.get_by_role("heading", name="Hàng đợi cảnh báo")).to_be_visible()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()
    expect(page.get_by_role("link", name="Dashboard")).to_be_visible()
    wait_for(lambda: users.get("minh.tran").language == "en", "the language kept as en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    # Dates stay in Vietnam's time: the first row's last-seen time, from the API's UTC.
    first = api_get(server, "minh.tran", "alerts", limit=1)["data"][0]
    shown = page.locator("tbody tr").first.locator("td").last.inner_text()
    utc_hour = int(first["last_seen"][11:13])
    assert f"{(utc_hour + 7) % 24:02d}:" in shown
    # Another browser (no local memory) opens in the user's language after signing in.
    other = page.context.browser.new_context()
    fresh = other.new_page()
    sign_in(fresh, server, "minh.tran")
    expect(fresh.get_by_role("heading", name="Alert queue")).to_be_visible()
    fresh.get_by_role("button", name="Tiếng Việt").click()
    expect(fresh.get_by_role("heading", name="Hàng đợi cảnh báo")).to_be_visible()
    other.close()
    wait_for(lambda: users.get("minh.tran").language == "vi", "the language kept as vi")


def test_keyboard_triage_moves_acknowledges_and_assigns(page: Page, server: ConsoleServer) -> None:
    sign_in(page, server, "lan.nguyen", "#/alerts?q=Linux&sort=first_seen&order=asc")
    rows = queue_rows(page)
    expect(rows.first).to_have_class(re.compile("current"))
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(rows.nth(2)).to_have_class(re.compile("current"))
    page.keyboard.press("k")
    chosen = rows.nth(1).get_attribute("data-id")
    page.keyboard.press("a")
    expect(page.locator(f'tr[data-id="{chosen}"] .badge.st-acknowledged')).to_be_visible()
    page.keyboard.press("m")
    expect(page.locator(f'tr[data-id="{chosen}"]')).to_contain_text("lan.nguyen")
    stored = api_get(server, "lan.nguyen", f"alerts/{chosen}")
    assert (stored["status"], stored["assignee"]) == ("acknowledged", "lan.nguyen")
    # Enter opens it; j on its page goes to the next one of the queue; Escape goes back.
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"#/alerts/{chosen}$"))
    expect(page.get_by_text("2 / ")).to_be_visible()
    page.keyboard.press("j")
    expect(page.get_by_text("3 / ")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("heading", name="Hàng đợi cảnh báo")).to_be_visible()


def test_bulk_resolve_and_escalate_to_a_case(page: Page, server: ConsoleServer) -> None:
    sign_in(page, server, "lan.nguyen", "#/alerts?status=new&q=crontab")
    rows = queue_rows(page)
    expect(rows).to_have_count(2)
    ids = [rows.nth(n).get_attribute("data-id") for n in range(2)]
    page.get_by_role("checkbox", name="Chọn tất cả cảnh báo đang hiển thị").check()
    expect(page.get_by_text("Đã chọn 2 cảnh báo")).to_be_visible()
    page.get_by_role("button", name="Chuyển thành vụ việc").click()
    expect(page).to_have_url(re.compile(r"#/cases/[\w-]+$"))
    expect(page.locator("section", has_text="Cảnh báo trong vụ việc (2)")).to_be_visible()
    case_id = page.url.rsplit("/", 1)[1]
    case = api_get(server, "lan.nguyen", f"cases/{case_id}")
    assert sorted(case["alert_ids"]) == sorted(ids)
    page.get_by_label("Trạng thái").select_option("in_progress")
    page.get_by_role("button", name="Lưu").click()
    expect(page.locator("h1 .badge")).to_have_text("Đang điều tra")
    # Back to the queue: close both with one verdict.
    page.goto(server.url + "#/alerts?status=new&q=crontab")
    page.get_by_role("checkbox", name="Chọn tất cả cảnh báo đang hiển thị").check()
    page.locator(".bulkbar").get_by_label("Kết luận").select_option("true_positive")
    page.locator(".bulkbar").get_by_label("Lý do").fill("Webshell đã được gỡ, máy đã cô lập.")
    page.get_by_role("button", name="Đóng với kết luận").click()
    expect(page.get_by_role("status")).to_contain_text("đã cập nhật: 2")
    for alert_id in ids:
        stored = api_get(server, "lan.nguyen", f"alerts/{alert_id}")
        assert (stored["status"], stored["verdict"]) == ("resolved", "true_positive")
        assert case_id in stored["cases"]


def test_an_anomaly_explains_its_score_in_words(page: Page, server: ConsoleServer) -> None:
    sign_in(page, server, "lan.nguyen", "#/alerts?q=bất thường")
    queue_rows(page).first.get_by_role("link").click()
    drivers = page.locator("ul.drivers li")
    expect(drivers).to_have_count(3)
    expect(drivers.first).to_have_text(re.compile(r"^Số lần đăng nhập thất bại: 45, thường 0–2"))
    page.get_by_role("button", name="English").click()
    expect(page.locator("ul.drivers li").first).to_have_text(
        re.compile(r"^Failed logons: 45, usual 0–2")
    )
    page.get_by_role("button", name="Tiếng Việt").click()
    # Kept for the user: the next tests sign in as this analyst and read Vietnamese.
    wait_for(
        lambda: api_get(server, "lan.nguyen", "auth/me")["language"] == "vi", "vi kept for lan"
    )


def test_an_agency_viewer_sees_only_its_agency(page: Page, server: ConsoleServer) -> None:
    sign_in(page, server, "can.bo.px")
    expected = api_get(server, "can.bo.px", "alerts", limit=500)
    expect(queue_rows(page)).to_have_count(expected["total"])
    # The agency by its registry name (diacritics and all), its id in the cell's title.
    (own,) = api_get(server, "can.bo.px", "agencies")["data"]
    assert own == {"id": "phuong-phuc-xa", "name": "UBND phường Phúc Xá", "tier": "commune"}
    cells = page.locator("tbody tr[data-id] td:nth-child(3)")
    assert set(cells.all_inner_texts()) == {own["name"]}
    assert cells.first.get_attribute("title") == own["id"]
    expect(page.locator("header .who")).to_contain_text(own["name"])
    # No triage for a viewer: no selection boxes, no bulk bar.
    expect(page.locator("tbody input[type=checkbox]")).to_have_count(0)
    expect(page.get_by_role("link", name="Luật phát hiện")).to_have_count(0)


def test_every_page_has_labelled_controls_and_a_screenshot(
    page: Page, server: ConsoleServer
) -> None:
    """Each page, as a soc_admin sees it at 1366×768: every control has an accessible name, and
    a screenshot goes to test-artifacts/console/pages/ (and to docs/screenshots/ with
    SOCPIPE_UPDATE_DOCS_SCREENSHOTS=1, for the README)."""
    targets = [ARTIFACTS / "pages"]
    if os.environ.get("SOCPIPE_UPDATE_DOCS_SCREENSHOTS") == "1":
        targets.append(DOCS_SCREENSHOTS)
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)

    def look(name: str) -> None:
        page.wait_for_load_state("networkidle")
        unlabeled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
                .filter(e => !e.hidden && e.type !== 'hidden' && e.offsetParent !== null)
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !(e.tagName === 'BUTTON' && e.textContent.trim()))
                .map(e => e.outerHTML.slice(0, 120))"""
        )
        assert not unlabeled, f"{name}: controls without a name: {unlabeled}"
        for target in targets:
            page.screenshot(path=str(target / f"{name}.png"), full_page=name in FULL_PAGES)

    page.goto(server.url)
    look("signin")
    sign_in(page, server, "quan.tri")
    anomaly = api_get(server, "quan.tri", "alerts", q="bất thường", limit=1)["data"][0]
    case = api_get(server, "quan.tri", "cases", limit=1)["data"]
    pages = [
        ("queue", "#/alerts"),
        ("alert", f"#/alerts/{anomaly['id']}"),
        ("dashboard", "#/dashboard"),
        ("cases", "#/cases"),
        *([("case", f"#/cases/{case[0]['id']}")] if case else []),
        ("rules", "#/rules"),
        ("rule", f"#/rules/{SSH_FAILURE}"),
        ("collectors", "#/collectors"),
        ("audit", "#/audit"),
    ]
    for name, at in pages:
        page.goto(server.url + at)
        expect(page.locator("main h1").first).to_be_visible()
        look(name)


def test_a_time_range_typed_in_vietnam_time(page: Page, server: ConsoleServer) -> None:
    sign_in(page, server, "lan.nguyen")
    # One hour ago, as a clock in Hà Nội shows it (UTC+7).
    since = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    page.get_by_label("Từ (giờ Việt Nam)").fill(
        (since + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M")
    )
    page.get_by_role("button", name="Áp dụng").click()
    expect(page).to_have_url(re.compile(r"since="))
    expected = api_get(server, "lan.nguyen", "alerts", since=since.isoformat(), limit=500)
    assert 0 < expected["total"] < 50
    expect(queue_rows(page)).to_have_count(expected["total"])


def test_the_dashboard_counts_as_the_api_and_leads_to_the_queue(
    page: Page, server: ConsoleServer
) -> None:
    stats = api_get(server, "quan.tri", "stats", interval="1h")
    sign_in(page, server, "quan.tri", "#/dashboard")
    alerts_kpi = page.locator(".kpi", has=page.get_by_text("Cảnh báo", exact=True))
    expect(alerts_kpi.locator(".value")).to_have_text(f"{stats['alerts']:,}".replace(",", "."))
    expect(page.locator("svg.chart")).not_to_have_count(0)
    # The numbers behind the agency chart are the API's, and each leads to its queue.
    busiest = stats["by_agency"][0]
    names = {a["id"]: a["name"] for a in api_get(server, "quan.tri", "agencies")["data"]}
    agency_panel = page.get_by_role("region", name="Theo đơn vị")
    agency_panel.locator("summary").click()
    row = agency_panel.locator("table tbody tr", has_text=names[busiest["key"]])
    expect(row).to_contain_text(str(busiest["alerts"]))
    row.get_by_role("link", name=names[busiest["key"]]).click()
    expect(page).to_have_url(re.compile(f"#/alerts\\?agency={busiest['key']}"))
    expect(queue_rows(page)).to_have_count(busiest["alerts"])
    # On a wall screen the same page has room for its charts side by side.
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(server.url + "#/dashboard")
    expect(page.locator("svg.chart").first).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-1920x1080.png"))


def test_collectors_show_the_silent_one_and_the_missing_records(
    page: Page, server: ConsoleServer
) -> None:
    sign_in(page, server, "lan.nguyen", "#/collectors")
    silent = page.locator("tr.silent")
    expect(silent).to_have_count(1)
    expect(silent).to_contain_text(SILENT_COLLECTOR)
    expect(silent).to_contain_text("Mất tín hiệu")
    banner = page.get_by_text(re.compile(r"^Cảnh báo: 1 bộ thu thập mất tín hiệu"))
    expect(banner).to_contain_text(SILENT_COLLECTOR)
    running = page.locator("tbody tr", has_text="px-files-01").first
    expect(running).to_contain_text("Đang hoạt động")
    # The agency whose detector received 37 fewer records than its collector sent.
    gap = page.locator("tr.gap", has_text=SHORT_AGENCY)
    expect(gap).to_contain_text("37")
    rows = api_get(server, "lan.nguyen", "collectors/completeness", agency=SHORT_AGENCY)
    assert rows["data"], rows


def test_a_rule_author_edits_validates_and_saves_a_rule(page: Page, server: ConsoleServer) -> None:
    before = api_get(server, "tac.gia", f"rules/{SSH_FAILURE}")
    sign_in(page, server, "tac.gia", "#/rules")
    page.get_by_role("link", name="SSH authentication failure", exact=True).click()
    expect(page).to_have_url(re.compile(f"#/rules/{SSH_FAILURE}$"))
    editor = page.get_by_role("textbox", name="Nội dung luật (YAML, chuẩn Sigma)")
    original = editor.input_value()
    assert original == before["yaml"]
    # A condition naming a selection the rule does not have: the error is at its line.
    broken = original.replace("condition: selection", "condition: selection and absent_one")
    line = broken.split("\n").index("  condition: selection and absent_one") + 1
    editor.fill(broken)
    page.get_by_role("button", name="Kiểm tra").click()
    expect(page.get_by_text(re.compile(f"^dòng {line}: "))).to_be_visible()
    expect(page.locator(".gutter .bad-line")).to_have_text(str(line))
    # Fixed, and the title changed: valid, then saved as a new version.
    editor.fill(
        original.replace("title: SSH authentication failure", "title: Đăng nhập SSH thất bại")
    )
    page.get_by_role("button", name="Kiểm tra").click()
    expect(page.get_by_text("Luật hợp lệ.")).to_be_visible()
    expect(page.locator(".gutter .bad-line")).to_have_count(0)
    page.get_by_label("Ghi chú thay đổi").fill("Tiêu đề tiếng Việt cho cán bộ các xã")
    page.get_by_role("button", name="Lưu", exact=True).click()
    expect(page.get_by_text(re.compile("Đã lưu “Đăng nhập SSH thất bại”"))).to_be_visible()
    after = api_get(server, "tac.gia", f"rules/{SSH_FAILURE}")
    assert after["version"] == before["version"] + 1
    assert after["title"] == "Đăng nhập SSH thất bại"
    assert after["comment"] == "Tiêu đề tiếng Việt cho cán bộ các xã"
    # An analyst reads the rule but may not change it.
    page.get_by_role("button", name="Đăng xuất").click()
    sign_in(page, server, "lan.nguyen", f"#/rules/{SSH_FAILURE}")
    expect(
        page.get_by_role("textbox", name="Nội dung luật (YAML, chuẩn Sigma)")
    ).not_to_be_editable()
    expect(page.get_by_role("button", name="Lưu", exact=True)).to_have_count(0)


def test_a_rule_is_tried_on_example_lines(page: Page, server: ConsoleServer) -> None:
    sign_in(page, server, "tac.gia", f"#/rules/{SSH_FAILURE}")
    cases = [
        ("mật khẩu sai", "Phải khớp", "Failed password for root from 113.160.12.9 port 52144 ssh2"),
        (
            "đăng nhập đúng",
            "Không được khớp",
            "Accepted password for root from 10.20.0.4 port 2 ssh2",
        ),
        # Expected to match but does not: the page must say it failed.
        ("sai kỳ vọng", "Phải khớp", "Accepted password for deploy from 10.20.0.4 port 3 ssh2"),
    ]
    for name, expected, message in cases:
        page.get_by_label("Tên trường hợp").fill(name)
        page.get_by_label("Kết quả mong đợi").select_option(label=expected)
        page.get_by_label("Định dạng").select_option("syslog")
        page.get_by_label("Dòng nhật ký thô hoặc sự kiện JSON").fill(
            f"<38>Nov 28 10:00:01 px-srv sshd[4120]: {message}"
        )
        page.get_by_role("button", name="Thêm trường hợp").click()
    page.get_by_role("button", name="Chạy kiểm thử").click()
    expect(page.locator(".passed", has_text="mật khẩu sai")).to_have_count(1)
    expect(page.locator(".passed", has_text="đăng nhập đúng")).to_have_count(1)
    expect(page.locator(".failed", has_text="sai kỳ vọng")).to_have_count(1)
