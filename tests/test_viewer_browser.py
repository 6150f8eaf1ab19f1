"""The trajectory viewer in a real browser: pages built from tests/test_viewer.py's predictions are opened from disk
in headless Chromium (Selenium + chromedriver, one browser for the module) and driven there: the result, fallback,
search and side-by-side filters, the pager, the filter state in the URL, model output kept as text (nothing of it
runs), and screenshots saved beside the predictions (viewer.screenshot, eval/view_run.py --screenshot).

The browser tests skip, saying why, only when no Chromium and chromedriver are found; scripts/test.sh installs
Debian's packages when it runs as root with apt-get.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from smart.evaluation import viewer
from test_viewer import CTXS, SMART, VANILLA, XSS_QUESTION, run_dir, smart_row, view_run, write_run  # noqa: F401

NO_BROWSER = ("no Chromium and chromedriver found: apt-get install chromium chromium-driver (scripts/test.sh does it "
              "as root), or set CHROME_BIN and CHROMEDRIVER")
needs_browser = pytest.mark.skipif(viewer.find_browser() is None, reason=NO_BROWSER)

KEYS = [f"dev_{k}" for k in CTXS]
SCRIPT_ANSWER = '<script>document.title = "pwned"; window.pwned = 1;</script>'
IMG_QUESTION = '<img src="x" onerror="window.pwned = 2"> Who wrote it?'


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's tests (each loads its page afresh)."""
    if viewer.find_browser() is None:
        pytest.skip(NO_BROWSER)
    driver = viewer.open_browser()
    yield driver
    driver.quit()


def shown(driver) -> list[str]:
    """The ids of the cards on screen, in order."""
    return driver.execute_script(
        'return Array.from(document.querySelectorAll("#cards .card .meta code"), function (c) {'
        ' return c.textContent; });')


def choose(driver, name: str, value: str) -> None:
    """Pick an option of a filter as a user does (a click on the option)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.NAME, name)).select_by_value(value)


def search(driver, text: str) -> None:
    """Replace the search box's text by typing (select all, delete, then the keys one by one)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.NAME, "q")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def state(driver) -> dict:
    return driver.execute_script('return {count: document.getElementById("count").textContent, hash: location.hash, '
                                 'page: document.querySelector(".pager .pageinfo").textContent, '
                                 'next: document.querySelector(".pager .next").disabled, title: document.title, '
                                 'pwned: window.pwned === undefined ? null : window.pwned};')


def assert_png(png: Path, size: tuple[int, int] = viewer.WINDOW) -> None:
    """A PNG of `size` showing something: dark text on a light page."""
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == size
        darkest, lightest = image.convert("L").getextrema()
    assert darkest < 80 and lightest > 220


def test_filters_driven_in_the_browser(browser, run_dir):
    eval_dir = run_dir / "eval"
    smart, vanilla = (viewer.load_run(eval_dir / f"popqa_{m}.jsonl") for m in ("smart", "vanilla_rag"))
    page = viewer.write_page(viewer.compare_path(smart.path, vanilla.path), [smart], [vanilla])
    viewer.show(browser, page)
    assert shown(browser) == KEYS and state(browser)["count"] == f"{len(KEYS)} of {len(KEYS)} examples"
    # the page's own script ran: the Content-Security-Policy's hash admits it in a real browser, nothing was blocked
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]

    choose(browser, "result", "wrong")
    wrong = [r["id"] for r in SMART if r["score"] == 0]
    assert shown(browser) == wrong and state(browser)["hash"] == "#result=wrong"
    choose(browser, "fallback", "locator")
    assert shown(browser) == ["dev_locator"]
    assert state(browser)["hash"] == "#result=wrong&fallback=locator"
    choose(browser, "result", "")
    choose(browser, "fallback", "intent")
    assert shown(browser) == ["dev_intent"]
    choose(browser, "fallback", "none")
    assert shown(browser) == [r["id"] for r in SMART if not r["fallbacks"]]
    choose(browser, "fallback", "")

    search(browser, "Hamlet")  # the question
    assert shown(browser) == ["dev_intent"] and state(browser)["hash"] == "#q=Hamlet"
    search(browser, "LYON")  # an answer, any case
    assert shown(browser) == ["dev_locator"]
    search(browser, "no such text")
    assert shown(browser) == [] and state(browser)["count"] == f"0 of {len(KEYS)} examples"
    search(browser, "")
    assert shown(browser) == KEYS

    # side by side: exactly the items whose two rows differ (as the page's summary counts them), then the others
    a = {r["id"]: r for r in smart.rows}
    b = {r["id"]: r for r in vanilla.rows}
    differing = [k for k in KEYS if viewer.differences(a.get(k), b.get(k))]
    assert differing == ["dev_xss", "dev_intent", "dev_locator", "dev_none"]
    choose(browser, "compare", "differ")
    assert shown(browser) == differing and state(browser)["hash"] == "#compare=differ"
    choose(browser, "compare", "same")
    assert shown(browser) == [k for k in KEYS if k not in differing]
    choose(browser, "compare", "differ")
    choose(browser, "result_b", "correct")  # SMART differs from a correct vanilla RAG answer
    assert shown(browser) == [k for k in differing if b.get(k, {}).get("score") == 1]

    # each citation link lands on a passage of its own card
    targets = browser.execute_script('return Array.from(document.querySelectorAll("#cards a.cite"), function (a) {'
                                     ' var t = document.getElementById(a.hash.slice(1));'
                                     ' return t && t.closest(".card") === a.closest(".card"); });')
    assert targets and all(targets)

    # the filter state in the URL is restored on load; the screenshot, scrolled to the cards (the filters on top),
    # lands beside the predictions
    png = viewer.screenshot(page, fragment="result=wrong&compare=differ", at="cards", driver=browser)
    assert png == eval_dir / "popqa_smart_vs_popqa_vanilla_rag.png"
    assert shown(browser) == [k for k in differing if a[k]["score"] == 0]
    assert browser.execute_script('return document.querySelector("select[name=result]").value') == "wrong"
    assert browser.execute_script('return Math.round(document.getElementById("filters").getBoundingClientRect().top)'
                                  ' === 0 && window.scrollY > 0')
    assert_png(png)


def test_model_output_is_shown_as_text_and_never_runs(browser, tmp_path):
    script = {**smart_row("none", SCRIPT_ANSWER, 0.0, facts=[]), "id": "dev_script", "question": IMG_QUESTION}
    predictions = write_run(tmp_path, "popqa_smart", "smart", SMART + [script], None)
    page = viewer.write_run_page(predictions)
    viewer.show(browser, page)
    after = state(browser)
    assert after["pwned"] is None and after["title"] == "popqa_smart · SMART trajectory viewer"
    assert browser.execute_script('return document.querySelectorAll("#cards script, #cards img").length') == 0
    texts = browser.execute_script('return Array.from(document.querySelectorAll("#cards .card"), function (c) {'
                                   ' return [c.querySelector(".question").textContent,'
                                   ' c.querySelector(".answer").textContent]; });')
    assert [IMG_QUESTION, SCRIPT_ANSWER] in texts
    assert [XSS_QUESTION, "<img src=x onerror=alert(1)>"] in [[q, ans.split(" cites ")[0]] for q, ans in texts]
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_pages_of_fifty_cards(browser, tmp_path):
    rows = [{**SMART[i % len(SMART)], "id": f"n{i:03d}"} for i in range(viewer.PAGE_SIZE + 12)]
    ids = [r["id"] for r in rows]
    page = viewer.write_run_page(write_run(tmp_path, "popqa_smart", "smart", rows, None))
    viewer.show(browser, page)
    assert shown(browser) == ids[:viewer.PAGE_SIZE]
    assert state(browser)["page"] == "page 1 of 2" and not state(browser)["next"]
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, ".pager .next").click()
    assert shown(browser) == ids[viewer.PAGE_SIZE:]
    assert state(browser)["page"] == "page 2 of 2" and state(browser)["next"] and state(browser)["hash"] == "#page=2"
    browser.find_element(By.CSS_SELECTOR, ".pager .prev").click()
    assert shown(browser) == ids[:viewer.PAGE_SIZE]
    choose(browser, "fallback", "locator")  # a filter starts again at page 1: here one page is enough
    assert shown(browser) == [r["id"] for r in rows if "locator" in r["fallbacks"]]
    assert state(browser)["page"] == "page 1 of 1"
    viewer.show(browser, page, "page=2")  # a page in the URL is restored
    assert shown(browser) == ids[viewer.PAGE_SIZE:]


@needs_browser
def test_view_run_saves_a_screenshot_the_report_links(run_dir, capsys):
    eval_dir = run_dir / "eval"
    assert view_run.main([str(eval_dir / "popqa_smart.jsonl"), "--compare", str(eval_dir / "popqa_vanilla_rag.jsonl"),
                          "--screenshot", "--filters", "compare=differ", "--window", "800x600"]) == 0
    png = eval_dir / "popqa_smart_vs_popqa_vanilla_rag.png"
    assert f"wrote {png} (800x600, top, #compare=differ)" in capsys.readouterr().out
    assert_png(png, (800, 600))
    assert not list(eval_dir.glob(".*.tmp"))
    lines = viewer.report_pages(run_dir)
    assert ("[smart vs vanilla_rag, side by side](eval/popqa_smart_vs_popqa_vanilla_rag.html) "
            "([screenshot](eval/popqa_smart_vs_popqa_vanilla_rag.png))") in "\n".join(lines)
    assert "[smart](eval/popqa_smart.html) ·" in "\n".join(lines)  # no screenshot of that one: no link


def test_view_run_without_a_browser_says_so(run_dir, monkeypatch, capsys):
    monkeypatch.setattr(viewer, "find_browser", lambda: None)
    assert view_run.main([str(run_dir / "eval" / "popqa_smart.jsonl"), "--screenshot", str(run_dir / "shot.png")]) == 1
    assert "error: no screenshot: no Chromium and chromedriver found" in capsys.readouterr().err
    assert (run_dir / "eval" / "popqa_smart.html").exists() and not (run_dir / "shot.png").exists()
