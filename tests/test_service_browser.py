"""The web page of `spanqa serve` in headless Chromium, against a real server with the trained reader.

Signs in with a token, asks, checks the marked answer against the API's, opens the answer's page and
checks that every highlight box lies over the answer's words (the box read off the screen, mapped
back to PDF points, read by pdfium) and over ink on the drawn page image; pages through the PDF,
searches passages, uploads a PDF with turned pages and a cropped box as an admin and asks about it,
deletes it, sends feedback, and uses the page by keyboard and at 360 px wide. Any Content-Security-
Policy violation or script error in the page fails the test.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed: pip install -e '.[test]'"
)

from page_overlay import (  # noqa: E402
    PageGeometry,
    collapse,
    screen_box_to_user_space,
    text_inside,
    write_turned_pdf,
)
from service_harness import server_config, start_server, write_knowledge_base  # noqa: E402

expect = sync_api.expect


def find_chromium() -> str | None:
    """SPANQA_CHROMIUM, else the system Chromium (Playwright's own download is not used)."""
    for candidate in (os.environ.get("SPANQA_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found at /usr/bin/chromium or on PATH (or SPANQA_CHROMIUM)"
)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READER = Path("models") / "minilm-l6-squad-a16"
RERANKER = Path("models") / "minilm-l6-rerank-a16"
REPO_ROOT = Path(__file__).resolve().parent.parent
README_SCREENSHOT = REPO_ROOT / "docs" / "screenshot-service.png"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 360, "height": 740}
# Share of dark pixels a box over a line of 10 pt text has at least (a box over blank paper has none).
MIN_INK = 0.03
# The PDF uploaded in the test: one page per quarter turn, all cropped off-origin; question -> page.
TURNS = [0, 90, 180, 270]
TURNED_CROP = (24.0, 36.0, 588.0, 768.0)
TURNED_PAGES = [
    "Observatory.\nThe museum's brass telescope was built in 1843 by a clockmaker from Lyon.",
    "Greenhouse.\nThe orchids in the north greenhouse are watered every Thursday by the night gardener.",
    "Harbour.\nThe ferry to Marlow Island leaves from pier nine at half past seven in the morning.",
    "Library.\nThe rare maps are kept in the basement vault behind a green steel door.",
]
TURNED_QUESTIONS = {
    "In which year was the museum's brass telescope built?": 1,
    "When are the orchids in the north greenhouse watered?": 2,
    "From which pier does the ferry to Marlow Island leave?": 3,
    "Where are the rare maps kept?": 4,
}


@dataclass
class Site:
    url: str
    server: object
    tokens: dict[str, str]
    token_file: object
    files: dict[str, Path]
    turned_pdf: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_data_dir, minilm_dir):
    from spanqa.pipelines.api import DocumentQA
    from spanqa.reader.calibration import CALIBRATION_FILE, AnswerCalibration, answer_ranking
    from spanqa.service.tokens import TokenFile
    from spanqa.settings import QASettings, ReaderSettings, RerankSettings

    reader = shared_data_dir / READER
    if not reader.is_dir():
        pytest.skip(f"the trained reader is not at {reader}")
    root = tmp_path_factory.mktemp("browser-kb")
    files = write_knowledge_base(root / "docs")
    # The project's own sample handbook (data/): full pages, for the README's screenshot.
    files["aurora"] = Path(shutil.copy(REPO_ROOT / "data" / "aurora_bicycle_works_handbook.pdf", root / "docs"))
    report = DocumentQA(root / "index", embedder=str(minilm_dir), reader=str(reader), device="cpu").index(
        [root / "docs"], workers=1
    )
    assert len(report.indexed) == len(files), report
    # The trained stand-in reranker where ../shared has it (else the server answers without reranking).
    reranker = shared_data_dir / RERANKER if (shared_data_dir / RERANKER).is_dir() else None
    settings = QASettings.from_keywords(reranker="unused" if reranker is None else str(reranker.resolve()),
                                        rerank=0 if reranker is None else RerankSettings.rerank)
    # A hand-set answer calibration (confidence = sigmoid(similarity)): answers carry a confidence.
    AnswerCalibration(
        reader=str(reader.resolve()), rank_weight=ReaderSettings.rank_weight, passages=10, mean=(0.0,) * 4,
        scale=(1.0,) * 4, weights=(0.0, 0.0, 0.0, 1.0), bias=0.0, threshold=0.5, max_logit_sum=20.0,
        target_coverage=0.9, fitted_questions=0, ranking=answer_ranking(settings.reader, settings.rerank),
    ).save(root / "index" / CALIBRATION_FILE)
    token_file = TokenFile(root / "tokens.json")
    tokens = {name: token_file.add(name, role)[1] for name, role in (("admin", "admin"), ("reader", "read"))}
    config = server_config(root / "index", reader, token_file.path, reranker=reranker)
    turned = write_turned_pdf(root / "turned.pdf", TURNED_PAGES, TURNS, TURNED_CROP)
    live = start_server(config)
    yield Site(live.url, live, tokens, token_file, files, turned)
    live.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab (its own sessionStorage); fails the test on any script error or CSP violation."""
    context = browser.new_context(viewport=WIDE)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on("console", lambda message: problems.append(f"console: {message.text}")
           if message.type == "error" and "Content Security Policy" in message.text else None)
    tab.set_default_timeout(30_000)
    yield tab
    context.close()
    assert problems == []


def sign_in(page, site: Site, user: str = "admin") -> None:
    page.goto(site.url + "/")
    page.get_by_label("Access token", exact=True).fill(site.tokens[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who-text")).to_have_text(re.compile(rf"Signed in as {user}\b"))


def ask(page, question: str) -> dict:
    """Asks through the question box; the API's JSON answer, once the page shows the answers."""
    page.get_by_label("Question", exact=True).fill(question)
    with page.expect_response(lambda response: response.url.endswith("/v1/ask")) as response:
        page.get_by_role("button", name="Ask", exact=True).click()
    body = response.value.json()
    expect(page.locator("#answers > li")).to_have_count(len(body["answers"]))
    return body


def geometry_of(site: Site, file_id: str, page_number: int) -> PageGeometry:
    with site.server.client(site.tokens["admin"]) as client:
        response = client.get(f"/v1/files/{file_id}/pages/{page_number}")
    response.raise_for_status()
    return PageGeometry.from_json(response.json())


def open_answer_page(page, rank: int, answer: dict) -> None:
    page.locator("#answers > li").nth(rank).get_by_role("button", name=re.compile("^Show answer on page")).click()
    expect(page.locator(f'#page-canvas[data-state="ready"][data-page="{answer["page"]}"]')).to_be_attached()


def shown_boxes(page) -> tuple[dict, list[dict]]:
    """The canvas's client rectangle and each highlight box element's (with its data attributes)."""
    return page.evaluate("""() => {
        const rect = (node) => { const r = node.getBoundingClientRect();
                                 return {x: r.x, y: r.y, width: r.width, height: r.height}; };
        const canvas = document.getElementById('page-canvas');
        const boxes = [...document.querySelectorAll('#page-boxes .hl-box')]
            .map((node) => ({...rect(node), data: {...node.dataset}}));
        return [rect(canvas), boxes];
    }""")


def ink_under(page, box: dict) -> float:
    """The share of dark pixels of the drawn page image under a box's client rectangle."""
    return page.evaluate("""(box) => {
        const canvas = document.getElementById('page-canvas');
        const r = canvas.getBoundingClientRect();
        const sx = canvas.width / r.width, sy = canvas.height / r.height;
        const x = Math.floor((box.x - r.x) * sx), y = Math.floor((box.y - r.y) * sy);
        const w = Math.max(1, Math.round(box.width * sx)), h = Math.max(1, Math.round(box.height * sy));
        const pixels = canvas.getContext('2d').getImageData(x, y, w, h).data;
        let dark = 0;
        for (let i = 0; i < pixels.length; i += 4) {
            if (0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2] < 160) dark += 1;
        }
        return dark / (pixels.length / 4);
    }""", box)


def server_path(site: Site, item: dict) -> Path:
    """The file an answer or passage quotes, on the server (users see only its display `source`)."""
    return Path(site.server.state.catalog.snapshot().by_id[item["file_id"]].source)


def assert_boxes_over_answer(page, site: Site, answer: dict) -> None:
    """The boxes on screen cover exactly the answer's words of the server's PDF, over ink on the image."""
    canvas, boxes = shown_boxes(page)
    assert len(boxes) == len(answer["highlight"]) > 0
    geometry = geometry_of(site, answer["file_id"], answer["page"])
    # The image is shown at the page's proportions (turned pages swap width and height).
    assert canvas["width"] / canvas["height"] == pytest.approx(geometry.aspect, rel=0.02)
    in_points = [screen_box_to_user_space(box, canvas, geometry) for box in boxes]
    for box, points in zip(boxes, in_points):
        expected = tuple(float(box["data"][key]) for key in ("x0", "y0", "x1", "y1"))
        assert points == pytest.approx(expected, abs=0.5)
        assert ink_under(page, box) > MIN_INK, (box, geometry)
    assert text_inside(server_path(site, answer), answer["page"], in_points) == collapse(answer["text"])


def has_no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")


# -- the tests ---------------------------------------------------------------------------------------


def test_answer_is_marked_and_highlighted_on_its_page_image(page, site, tmp_path):
    sign_in(page, site)
    body = ask(page, "How many weeks of parental leave?")
    answers = body["answers"]
    items = page.locator("#answers > li")
    for rank, answer in enumerate(answers):
        expect(items.nth(rank).locator("mark")).to_have_text(answer["text"], use_inner_text=True)
        expect(items.nth(rank).locator(".meta").first).to_contain_text(f"{answer['name']} · page {answer['page']}")
        expect(items.nth(rank).locator(".meta").first).to_contain_text(
            f"confidence {math.floor(100 * answer['confidence'] + 0.5)}%"  # JavaScript's Math.round
        )
        assert str(server_path(site, answer)) not in items.nth(rank).inner_text()  # never the server's path
    # The first answer from the two-page policy: its page has a neighbour to page to.
    rank, shown = next((rank, answer) for rank, answer in enumerate(answers)
                       if server_path(site, answer) == site.files["policy"] and answer["highlight"])
    other = 3 - shown["page"]

    open_answer_page(page, rank, shown)
    expect(page.locator("#page-label")).to_have_text(f"Page {shown['page']} of 2")
    assert_boxes_over_answer(page, site, shown)

    # The boxes belong to the answer's page only, and come back with it.
    toward_other, back = ("Previous page", "Next page") if other < shown["page"] else ("Next page", "Previous page")
    expect(page.get_by_role("button", name=back)).to_be_disabled()
    page.get_by_role("button", name=toward_other).click()
    expect(page.locator(f'#page-canvas[data-state="ready"][data-page="{other}"]')).to_be_attached()
    expect(page.locator("#page-label")).to_have_text(f"Page {other} of 2")
    expect(page.locator("#page-boxes .hl-box")).to_have_count(0)
    expect(page.get_by_role("button", name=toward_other)).to_be_disabled()
    page.get_by_role("button", name=back).click()
    expect(page.locator(f'#page-canvas[data-state="ready"][data-page="{shown["page"]}"]')).to_be_attached()
    expect(page.locator("#page-boxes .hl-box")).to_have_count(len(shown["highlight"]))

    # A narrower window (one column, the image redrawn sharper or not): the boxes are still on the words.
    page.set_viewport_size({"width": 900, "height": 800})
    page.wait_for_function("() => document.getElementById('page-canvas').getBoundingClientRect().width > 700")
    assert_boxes_over_answer(page, site, shown)
    page.screenshot(path=str(tmp_path / "answer-900px.png"))


def test_the_readme_screenshot_shows_the_sample_question_answered_on_its_page(page, site, tmp_path, shared_data_dir):
    sign_in(page, site)
    body = ask(page, "When was Aurora Bicycle Works founded?")
    rank, shown = next((rank, answer) for rank, answer in enumerate(body["answers"]) if answer["text"] == "1984")
    if (shared_data_dir / RERANKER).is_dir():
        assert rank == 0  # with the reranker, the right answer comes first
    assert server_path(site, shown) == site.files["aurora"] and shown["page"] == 1
    open_answer_page(page, rank, shown)
    assert_boxes_over_answer(page, site, shown)
    # The README's picture is refreshed on request only, so a test run leaves the checkout as it was.
    target = README_SCREENSHOT if os.environ.get("SPANQA_README_SCREENSHOT") == "1" else tmp_path / "answer.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target))


def test_a_text_file_answer_says_there_is_no_page_image(page, site):
    sign_in(page, site, "reader")
    body = ask(page, "Where do new employees get their laptop?")
    rank = next(i for i, answer in enumerate(body["answers"]) if answer["name"] == "onboarding.md")
    item = page.locator("#answers > li").nth(rank)
    expect(item.locator(".no-image")).to_contain_text("No page image")
    expect(item.get_by_role("button", name=re.compile("^Show answer on page"))).to_have_count(0)


def test_keyboard_alone_signs_in_asks_and_opens_the_page(page, site):
    page.goto(site.url + "/")
    expect(page.get_by_label("Access token", exact=True)).to_be_focused()
    page.keyboard.type(site.tokens["reader"])
    page.keyboard.press("Enter")
    question = page.get_by_label("Question", exact=True)
    expect(question).to_be_focused()
    page.keyboard.type("What time does the office open?")
    with page.expect_response(lambda response: response.url.endswith("/v1/ask")) as response:
        page.keyboard.press("Enter")
    answers = response.value.json()["answers"]
    expect(page.locator("#answers > li")).to_have_count(len(answers))
    expect(page.locator("#answers > li mark").first).to_have_text(answers[0]["text"], use_inner_text=True)
    expect(question).to_be_focused()  # the box was disabled while asking; the focus comes back to it

    show = page.locator("#answers > li").first.get_by_role("button", name=re.compile("^Show answer on page"))
    for _ in range(12):  # Tab through the form to the first answer's button
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('show-page')"):
            break
    expect(show).to_be_focused()
    # Focus is visible where it is reached by keyboard.
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    expect(page.locator("#viewer-title")).to_be_focused()
    expect(page.locator('#page-canvas[data-state="ready"]')).to_be_attached()
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()
    expect(show).to_be_focused()


def test_passages_view_lists_what_the_search_returns(page, site):
    sign_in(page, site, "reader")
    page.get_by_role("button", name="Passages").click()
    page.get_by_label("Search passages", exact=True).fill("parental leave weeks")
    with page.expect_response(lambda response: response.url.endswith("/v1/search")) as response:
        page.get_by_label("Search passages", exact=True).press("Enter")
    passages = response.value.json()["passages"]
    assert passages
    items = page.locator("#passages > li")
    expect(items).to_have_count(len(passages))
    for rank, passage in enumerate(passages):
        expect(items.nth(rank).locator(".passage-text")).to_have_text(passage["text"], use_inner_text=True)
        expect(items.nth(rank).locator(".passage-place")).to_have_text(f"{passage['name']}, page {passage['page']}")
    assert passages[0]["name"] == "vacation_policy.pdf" and "parental leave" in passages[0]["text"]
    items.first.get_by_role("button", name=re.compile("^Show passage on page")).click()
    expect(page.locator(f'#page-canvas[data-state="ready"][data-page="{passages[0]["page"]}"]')).to_be_attached()
    expect(page.locator("#page-boxes .hl-box")).to_have_count(len(passages[0]["highlight"]))


def test_admin_uploads_a_pdf_asks_about_its_turned_pages_and_deletes_it(page, site, tmp_path):
    sign_in(page, site, "admin")
    page.get_by_role("button", name="Files").click()
    with site.server.client(site.tokens["admin"]) as client:
        listed = client.get("/v1/files").json()["files"]
    expect(page.locator("#files > li")).to_have_count(len(listed))
    expect(page.locator("#files .file-name")).to_have_text([entry["name"] for entry in listed])

    page.get_by_label(re.compile("^Add files")).set_input_files(str(site.turned_pdf))
    page.get_by_role("button", name="Upload and index").click()
    expect(page.locator('#upload-status li[data-name="turned.pdf"]')).to_have_attribute("data-status", "indexed",
                                                                                      timeout=120_000)
    row = page.locator('#files > li[data-name="turned.pdf"]')
    expect(row).to_have_count(1)
    page.screenshot(path=str(tmp_path / "files.png"))

    page.get_by_role("button", name="Questions", exact=True).click()
    for question, page_number in TURNED_QUESTIONS.items():
        # The uploaded file's best answer (another file's may outrank it: the reader is small).
        answers = ask(page, question)["answers"]
        rank, best = next((rank, a) for rank, a in enumerate(answers) if a["name"] == "turned.pdf")
        assert best["page"] == page_number, (question, best)
        open_answer_page(page, rank, best)
        expect(page.locator("#page-label")).to_have_text(f"Page {page_number} of {len(TURNED_PAGES)}")
        assert page.locator("#page-canvas").get_attribute("data-rotation") == str(TURNS[page_number - 1])
        assert_boxes_over_answer(page, site, best)
        page.screenshot(path=str(tmp_path / f"turned-page-{page_number}.png"))

    page.get_by_role("button", name="Files").click()
    row = page.locator('#files > li[data-name="turned.pdf"]')
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete turned.pdf").click()
    expect(row).to_have_count(0)
    expect(page.locator("#status")).to_have_text("Deleted turned.pdf.")
    with site.server.client(site.tokens["admin"]) as client:
        assert "turned.pdf" not in [entry["name"] for entry in client.get("/v1/files").json()["files"]]


def test_feedback_is_confirmed_and_recorded(page, site):
    question = "When is lunch served in the cafeteria?"
    sign_in(page, site, "reader")
    body = ask(page, question)
    first = page.locator("#answers > li").first
    first.get_by_role("button", name="Answer 1 is correct").click()
    expect(first.locator(".feedback-status")).to_have_text("Thanks: marked correct.")
    expect(first.get_by_role("button", name="Answer 1 is correct")).to_have_attribute("aria-pressed", "true")
    with site.server.client(site.tokens["admin"]) as client:
        export = client.get("/v1/feedback/export").json()
    recorded = [(qa["question"], qa["answers"][0]["text"]) for article in export["data"]
                for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    assert (question, collapse(body["answers"][0]["text"])) in [(q, collapse(text)) for q, text in recorded]


def test_narrow_screen_has_one_column_and_no_horizontal_scroll(browser, site, tmp_path):
    context = browser.new_context(viewport=NARROW)
    page = context.new_page()
    try:
        page.goto(site.url + "/")
        assert has_no_horizontal_scroll(page)
        sign_in(page, site, "admin")
        body = ask(page, "How many days of paid vacation does every employee receive?")
        assert has_no_horizontal_scroll(page)
        best = body["answers"][0]
        open_answer_page(page, 0, best)
        assert_boxes_over_answer(page, site, best)
        canvas = page.locator("#page-canvas").bounding_box()
        assert canvas["x"] >= 0 and canvas["x"] + canvas["width"] <= NARROW["width"] and canvas["width"] > 200
        assert has_no_horizontal_scroll(page)
        page.screenshot(path=str(tmp_path / "narrow-answer.png"), full_page=True)
        for view in ("Passages", "Files"):
            page.get_by_role("button", name=view, exact=True).click()
            assert has_no_horizontal_scroll(page), view
        expect(page.locator("#files > li").first).to_be_visible()
        assert has_no_horizontal_scroll(page)
        page.screenshot(path=str(tmp_path / "narrow-files.png"), full_page=True)
    finally:
        context.close()


def test_roles_sign_out_and_errors(page, site):
    # A wrong token is refused with a visible alert.
    page.goto(site.url + "/")
    page.get_by_label("Access token", exact=True).fill("sqa_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")

    # A reader sees no admin view; signing out forgets the token, also across a reload.
    sign_in(page, site, "reader")
    expect(page.get_by_role("button", name="Files")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 1
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Access token", exact=True)).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_label("Access token", exact=True)).to_be_visible()

    # A token revoked while signed in: the next request's 401 leads back to the sign-in form.
    _, temporary = site.token_file.add("temporary", "read")
    site.tokens["temporary"] = temporary
    try:
        sign_in(page, site, "temporary")
        site.token_file.revoke("temporary")
        page.get_by_label("Question", exact=True).fill("How many vacation days?")
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.get_by_label("Access token", exact=True)).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("signed out")
    finally:
        site.tokens.pop("temporary")

    # A busy server (429/503, simulated here) is reported with when to retry.
    sign_in(page, site, "reader")
    page.route("**/v1/ask", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "7", "content-type": "application/json"},
        body='{"error": "busy", "detail": "the question queue is full"}'))
    page.get_by_label("Question", exact=True).fill("How many vacation days?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("retry in 7 s")
    expect(page.get_by_label("Question", exact=True)).to_be_enabled()


def test_an_open_server_needs_no_sign_in(browser, site):
    """Without a tokens file (a loopback-only server) the page skips the sign-in and has no sign-out."""
    from dataclasses import replace

    open_server = start_server(replace(site.server.state.config, tokens_file=None))
    context = browser.new_context(viewport=WIDE)
    try:
        page = context.new_page()
        page.goto(open_server.url + "/")
        expect(page.locator("#who-text")).to_have_text("Open server (no sign-in)")
        expect(page.get_by_label("Access token", exact=True)).to_be_hidden()
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        expect(page.get_by_role("button", name="Files")).to_be_visible()
        assert page.evaluate("() => sessionStorage.length") == 0
    finally:
        context.close()
        open_server.stop()


def test_an_admin_trains_the_reader_on_feedback_and_goes_back_to_the_earlier_one(page, site):
    # Last in the module: the server answers with the trained reader until the rollback at the end.
    question = "How many weeks of paid parental leave do parents receive?"
    with site.server.client(site.tokens["reader"]) as client:
        answer = client.post("/v1/ask", json={"question": question, "top_k": 1}).json()["answers"][0]
        place = {key: answer[key] for key in ("file_id", "page", "start", "end", "text")}
        assert client.post("/v1/feedback", json={"question": question, "answer": place, "correct": True}).status_code == 201
    base = READER.name
    sign_in(page, site, "admin")
    page.get_by_role("button", name="Files").click()
    expect(page.locator("#training-text")).to_have_text(f"Answering with {base}.")
    expect(page.get_by_role("button", name="Go back to the earlier reader")).to_be_hidden()
    page.get_by_role("button", name="Train on feedback").click()
    expect(page.locator("#training-text")).to_contain_text("Trained in", timeout=600_000)
    expect(page.locator("#training-text")).not_to_contain_text(f"Answering with {base}.")
    page.get_by_role("button", name="Go back to the earlier reader").click()
    expect(page.locator("#training-text")).to_contain_text(f"Answering with {base}.")
    expect(page.get_by_role("button", name="Go back to the earlier reader")).to_be_hidden()
    assert Path(site.server.state.engine.settings.reader.reader).name == base
