"""The web chat page in a real headless Chromium (Debian's `chromium`, driven by
Playwright) against a live server on loopback: ask the seed question, see both sections
and the disclaimer, open a citation, ask a follow-up answered in context, start over, see
an out-of-scope question declined with what was not found."""

from __future__ import annotations

import os
import shutil

import pytest

from assistant.types import DISCLAIMER
from tests.server_fixtures import live_server  # noqa: F401

SEED = ("What is the role of Chimeric Antigen Receptor (CAR) T cells in the treatment of "
        "solid organ malignancies?")
CHROMIUM = os.environ.get("ASSISTANT_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def test_chat_page_answers_follow_ups_and_shows_citations(browser, live_server, tmp_path):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/")
    assert page.title() == "Clinical follow-up assistant"

    # Ask the seed question.
    page.fill("#question", SEED)
    page.click("#ask")
    first = page.locator("#conversation > li.turn:not(.pending)").first
    first.wait_for()
    assert first.locator(".question").inner_text() == SEED
    headings = first.locator(".answer-section h3").all_inner_texts()
    assert headings == ["From the Guidelines", "From the Research"]
    assert first.locator(".disclaimer").inner_text().endswith(DISCLAIMER)
    assert first.locator(".references li").count() >= 1

    # A citation shows the cited passage and its source.
    first.locator(".answer-section button.cite").first.click()
    panel = page.locator("#citation")
    panel.wait_for(state="visible")
    assert page.locator("#citation-title").inner_text().startswith("[")
    assert page.locator("#citation-source").inner_text().strip()
    passage = page.locator("#citation-passages .passage").first.inner_text()
    assert len(passage) > 40
    page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)
    page.click("#close-citation")
    panel.wait_for(state="hidden")

    # A follow-up, read in the light of the conversation.
    assert page.locator("#question-label").inner_text() == "Have a follow-up question?"
    page.fill("#question", "What about its toxicities?")
    page.press("#question", "Enter")
    second = page.locator("#conversation > li.turn:not(.pending)").nth(1)
    second.wait_for()
    searched = second.locator(".searched").inner_text()
    assert "toxicit" in searched.lower() and "car" in searched.lower()
    assert second.locator(".answer-section h3").count() == 2
    assert DISCLAIMER in second.locator(".disclaimer").inner_text()

    # The conversation is kept on the server and survives a reload of the page.
    page.reload()
    page.locator("#conversation > li.turn").nth(1).wait_for()
    assert page.locator("#conversation > li.turn").count() == 2

    # Start over: a new conversation.
    page.click("#new-conversation")
    assert page.locator("#conversation > li").count() == 0

    # Out of scope: the plain notice, and what was not found.
    page.fill("#question", "What dose of cyclophosphamide is used for a dog with lymphoma?")
    page.click("#ask")
    declined = page.locator("#conversation > li.turn:not(.pending)").first
    declined.wait_for()
    assert declined.locator(".references li").count() == 0
    assert "does not address this question" in declined.locator(".notice").first.inner_text()
    assert "dog" in declined.locator(".note").inner_text()
    page.click("#new-conversation")
    assert page.locator("#conversation > li").count() == 0
    assert page.locator("#question-label").inner_text() == "Ask a clinical question"

    # An empty question is refused on the page itself.
    page.fill("#question", "   ")
    page.click("#ask")
    assert "Type a clinical question" in page.locator("#error").inner_text()
    assert errors == []
    page.close()
