"""How fast the Distributions view redraws in a browser after a step-slider move: `python -m playground.bench
--browser`.

What a person perceives: the time from the slider's `input` event (an arrow key on the step slider's track) to
the moment the new next-token figure (#dist-plot) is first drawn (a new plot with its bars in the page), to its last
change (Gradio asks Plotly for a resize after each figure: a redraw some 100 ms later that moves nothing here), and
to the moment every output of the move (caption, figures, tables) has settled. All are taken inside the page
(performance.now(): the input event, then MutationObservers, the last change before the page goes quiet), so
Playwright's own round trips are not counted.
The app runs as its own process (`python app.py --port N`, as a person starts it) unless --url names running
ones; with several URLs the moves alternate between them (each its own tab), for side-by-side medians.
"""
from __future__ import annotations

import statistics
from typing import Any

from playwright.sync_api import Page, expect, sync_playwright

QUERY = "?max_new_tokens=48&min_new_tokens=48&samples=3&temperature=0.9&top_p=0.9&min_p=0.05&seed=1"
QUIET_MS = 400  # no DOM change for this long after the caption names the new step: the move's redraw is over

# installed once per page: records the input event's time and the last DOM change of the plot and of the view
WATCH = """() => {
  const w = window.__dpBench = {input: 0, drawn: 0, plot: 0, any: 0, caption: 0, shown: null};
  const track = document.querySelector('#dist-step input[type=range]');
  const figure = () => document.querySelector('#dist-plot .js-plotly-plot');
  track.addEventListener('input', () => {
    Object.assign(w, {input: performance.now(), drawn: 0, plot: 0, any: 0, caption: 0, shown: figure()});
  }, true);
  new MutationObserver(() => {
    w.plot = performance.now();
    const now = figure();  // the first time a new figure (not the one shown at the input) has its bars drawn
    if (!w.drawn && now && now !== w.shown && now.querySelector('.main-svg .barlayer .trace')) w.drawn = w.plot;
  })
    .observe(document.querySelector('#dist-plot'), {subtree: true, childList: true, attributes: true,
                                                     characterData: true});
  const caption = document.querySelector('#dist-caption');
  new MutationObserver(() => {  // the new step's caption: the answer has arrived and Gradio has rendered it
    if (!w.caption && caption.textContent.includes(`step ${Number(track.value)} `)) w.caption = performance.now();
  })
    .observe(caption, {subtree: true, childList: true, characterData: true});
  const view = document.querySelector('#dist-caption').closest('[role=tabpanel]') || document.body;
  new MutationObserver(() => { w.any = performance.now(); })
    .observe(view, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def prepare(page: Page, url: str) -> None:
    """Open the page, run Generate (3 outputs x 48 tokens) and open the Distributions view at output 0, step 0."""
    page.goto(url + QUERY)
    expect(page.locator("#prompt textarea")).to_be_visible(timeout=60_000)
    expect(page.locator("#preset-info")).to_contain_text("restored from the link", timeout=60_000)
    page.locator("#run").click()
    expect(page.locator("#generate-status")).to_contain_text("tokens/s", timeout=300_000)
    page.locator('#tokens .dp-tok[data-sample="0"][data-step="0"]').click()
    page.locator('#token-popup .dp-popup[data-sample="0"][data-step="0"]').get_by_role(
        "button", name="Open in Distributions").click()
    expect(page.locator("#dist-caption")).to_contain_text("step 0", timeout=60_000)
    expect(page.locator("#dist-plot .js-plotly-plot")).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1000)  # let the first figures settle before the observers start
    page.evaluate(WATCH)


def one_move(page: Page, step: int) -> tuple[float, float, float, float]:
    """Press the right arrow on the step slider's track (step-1 -> step); (ms to the new caption: the answer has
    arrived, ms to the new figure first drawn, ms to the figure's last change, ms until the whole view settled)."""
    page.locator("#dist-step input[type=range]").press("ArrowRight")
    expect(page.locator("#dist-caption")).to_contain_text(f"step {step} ", timeout=60_000)
    while True:  # wait for quiet: the last change of the move, not the first
        page.wait_for_timeout(QUIET_MS // 4)
        marks: dict[str, Any] = page.evaluate("() => ({...window.__dpBench, now: performance.now()})")
        if marks["now"] - max(marks["plot"], marks["any"]) > QUIET_MS:
            if not marks["drawn"]:  # no new figure element (a redraw in place): its last change is when it was drawn
                marks["drawn"] = marks["plot"]
            return tuple(marks[name] - marks["input"] for name in ("caption", "drawn", "plot", "any"))  # type: ignore


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{name}: median {statistics.median(ordered):.0f} ms · p90 {p90:.0f} ms · n={len(ordered)}"


Samples = tuple[list[float], list[float], list[float], list[float]]


def measure(urls: list[str], moves: int) -> dict[str, Samples]:
    """For each URL: (ms to the caption, to the figure first drawn, to its last change, until the view settled) per
    move, moves alternating between the URLs."""
    from pages import CHROMIUM, CHROMIUM_ARGS  # tests/pages.py: the house's Chromium and its flags

    results: dict[str, Samples] = {url: ([], [], [], []) for url in urls}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = {}
        for url in urls:
            pages[url] = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            prepare(pages[url], url)
        for step in range(1, moves + 1):
            for url in urls:
                for samples, ms in zip(results[url], one_move(pages[url], step)):
                    samples.append(ms)
        browser.close()
    return results


def run(urls: list[str], moves: int) -> None:
    """Start the app when no URL is given; print the medians per URL."""
    import sys
    from contextlib import ExitStack
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/pages.py
    with ExitStack() as stack:
        if not urls:
            from engine.bench.app_process import running_app

            urls = [stack.enter_context(running_app())]
        for url, (caption_ms, drawn_ms, plot_ms, settled_ms) in measure(urls, moves).items():
            print(f"{url} step slider, arrow key -> {summary('new caption', caption_ms)}; "
                  f"{summary('next-token figure drawn', drawn_ms)}; {summary('its last change', plot_ms)}; "
                  f"{summary('whole view settled', settled_ms)}",
                  flush=True)
