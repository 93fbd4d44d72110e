"""Step previews through the real UI over the fake engine: ticked, the take's spectrogram appears
and changes while a `[slow]` take is made (0.15 s a step), ending with the take's own; unticked,
none is made; Cancel still stops a previewed run. Every wait is on a condition."""
from __future__ import annotations

from .helpers import drag_region, open_page, painted_regions, upload, wait_attr, wait_status, write_clip

# Records, in the page, every distinct image the preview shows, with its label and whether the
# status already said the take was ready when it appeared.
WATCH = """() => { window.shown = [];
  // one entry per image; its label is re-read on every change, for Gradio may set the image's src
  // and the label's text in separate updates (under load, seconds apart)
  const note = () => { const img = document.querySelector('#step-preview img');
    const src = img && img.getAttribute('src');
    if (!src) return;
    const label = document.querySelector('#step-preview')?.innerText || '';
    const seen = window.shown.find((s) => s.src === src);
    if (seen) { seen.label = label; return; }
    window.shown.push({src, label, ready: (document.querySelector('#status')?.innerText || '').includes('ready')}); };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                     attributes: true}); }"""


def _painted(browser, url, tmp_path, prompt: str):
    """A page with a 4 s clip loaded, 1–2 s painted and ``prompt`` typed."""
    page = open_page(browser, url)
    upload(page, write_clip(tmp_path / "clip.wav", 4.0))
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    drag_region(page, 1.0, 2.0)
    page.fill("#prompt textarea", prompt)
    return page


def _start(page, steps: int) -> None:
    box = page.locator("#steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")
    page.click("#generate")


def test_previews_appear_while_a_take_is_made_only_when_asked(studio, browser, tmp_path):
    page = _painted(browser, studio[0], tmp_path, "[slow] glassy bells")
    assert not page.locator("#step-preview").is_visible()  # off by default

    page.check("#show-previews input")
    page.evaluate(WATCH)
    _start(page, 16)  # previews after steps 4, 8, 12 and 16 (the take)
    wait_status(page, "take ready")
    page.wait_for_function("() => window.shown.some((s) => s.label.includes('step 16/16'))")
    shown = page.evaluate("window.shown")
    steps = [int(s["label"].split("step ")[1].split("/")[0]) for s in shown]
    assert steps == sorted(steps) and steps[-1] == 16, shown
    before_ready = [s for s in shown if not s["ready"]]
    assert len({s["src"] for s in before_ready}) >= 2, shown  # distinct images while the take was made
    (a, b), = painted_regions(page)  # as snapped to the latent grid: what the take regenerated
    assert f"{a:.1f}–{b:.1f} s" in shown[-1]["label"]

    page.uncheck("#show-previews input")
    page.wait_for_function("() => !document.querySelector('#step-preview') || "
                           "document.querySelector('#step-preview').offsetParent === null")
    page.evaluate(WATCH)
    _start(page, 8)
    wait_status(page, "take ready")
    page.wait_for_function("() => document.querySelectorAll('#takes input[type=radio]').length === 2")
    assert page.evaluate("window.shown") == []
    assert not page.locator("#step-preview").is_visible()
    page.close()


def test_cancel_stops_a_previewed_take(studio, browser, tmp_path):
    page = _painted(browser, studio[0], tmp_path, "[slow] long drone")
    page.check("#show-previews input")
    page.evaluate(WATCH)
    _start(page, 100)  # 15 s: the first preview comes after step 15 (about 2 s)
    page.wait_for_function("() => window.shown.length > 0")
    page.click("#cancel")
    wait_status(page, "Cancelled after 0 of 1 takes")
    assert page.locator("#takes input[type=radio]").count() == 0
    page.close()


def test_a_prompt_source_is_previewed_too(studio, browser):
    url, _ = studio
    page = open_page(browser, url)
    page.get_by_role("tab", name="Prompt").click()
    page.fill("#src-prompt textarea", "[slow] warm pads")
    box = page.locator("#steps input[type=number]")
    box.fill("16")
    box.press("Enter")
    page.check("#show-previews input")
    page.evaluate(WATCH.replace("'ready'", "'Generated'"))
    page.click("#src-generate")
    wait_status(page, "Generated a")
    page.wait_for_function("() => window.shown.some((s) => s.label.includes('step 16/16'))")
    shown = page.evaluate("window.shown")
    assert len({s["src"] for s in shown if not s["ready"]}) >= 2, shown
    assert shown[-1]["label"].endswith("0.0–10.0 s")  # the whole source (the Seconds slider's default)
    page.close()
