"""Remake the README's screenshots (assets/studio-screenshot.png, studio-panels.png, studio-bars.png).

    python -m assets.make_screenshot

Runs the studio over the fake engine (no weights) and, each on a fresh page:
* studio-screenshot.png: the arpeggio demo with two painted regions and three takes, take 1 heard as B;
* studio-panels.png: the toolkit's panels: small-music-base (so the guidance section shows), a painted
  region, the LoRA panel, a take made with step previews on, the seam audition on its first border;
* studio-bars.png: the drum demo's bar ruler and tempo panel (the tempo found on load), regions
  snapped to bars, a take labelled in bars, and the loop player looping a region.
Needs Debian's chromium and playwright, as the browser tests do.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import ARGS, CHROMIUM
from tests.browser.helpers import drag_region, open_page, start_app, upload, wait_attr, wait_status, wait_text

HERE = Path(__file__).resolve().parent


def load(page, name: str) -> None:
    upload(page, HERE / name)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    page.wait_for_function("() => !document.querySelector('#tempo-note').innerText.includes('Finding')",
                           timeout=180_000)


def studio_screenshot(page) -> Path:
    load(page, "arp-120bpm.wav")
    drag_region(page, 1.5, 3.0)
    drag_region(page, 5.5, 7.0)
    page.fill("#prompt textarea", "glassy bells")
    page.locator("#n-takes input[type=number]").fill("3")
    page.locator("#n-takes input[type=number]").press("Enter")
    page.click("#generate")
    wait_status(page, "3 takes ready")  # take 1 is picked
    wait_attr(page, "ready", "1")
    page.click("#painter .b-btn")
    wait_attr(page, "mode", "B")
    return shoot(page, "studio-screenshot.png")


def studio_panels(page) -> Path:
    load(page, "arp-120bpm.wav")
    page.locator("#model input").fill("Small · music · base")
    page.keyboard.press("Enter")
    page.locator("#guidance").wait_for(state="visible")
    drag_region(page, 2.0, 4.0)
    page.fill("#prompt textarea", "glassy bells over the arpeggio")
    page.fill("#negative textarea", "distortion, hiss")
    page.locator("#lora > button").first.click()
    page.check("#show-previews input")
    page.click("#generate")
    wait_status(page, "take ready")
    page.locator("#takes input[type=radio]").last.check()
    page.locator("#seams > button").first.click()
    wait_text(page, "#seam-note", "borders in take 1")
    page.click("#seam-pick input")
    page.locator("ul[role=listbox] li").first.click()
    wait_text(page, "#seam-note", "Looping")
    return shoot(page, "studio-panels.png")


def studio_bars(page) -> Path:
    load(page, "drums-96bpm.wav")
    wait_text(page, "#tempo-note", "Found by")
    page.locator("#snap").get_by_label("bars").check()
    wait_attr(page, "snap", "bar")
    drag_region(page, 5.2, 7.3)  # bar 3, from a sloppy drag
    page.fill("#painter .sa3p-foot input.addbars", "1–1")
    page.press("#painter .sa3p-foot input.addbars", "Enter")
    wait_attr(page, "regions", "2")
    page.fill("#prompt textarea", "a tom fill")
    page.click("#generate")
    wait_status(page, "take ready")  # and picked
    wait_attr(page, "ready", "1")
    page.locator("#painter .sa3p-region").first.click()
    page.click("#painter .loop-btn")
    page.wait_for_function("() => document.querySelector('#painter .sa3p').dataset.loop")
    top = page.locator("#painter").bounding_box()
    bottom = page.locator("#tempo-note").bounding_box()
    takes = page.locator("#takes").bounding_box()
    clip = {"x": 0, "y": top["y"] - 8, "width": page.viewport_size["width"],
            "height": max(bottom["y"] + bottom["height"], takes["y"] + takes["height"]) - top["y"] + 16}
    return shoot(page, "studio-bars.png", clip=clip)


def shoot(page, name: str, clip: dict | None = None) -> Path:
    out = HERE / name
    page.screenshot(path=str(out), full_page=True, clip=clip)
    print(f"wrote {out}")
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as sessions, sync_playwright() as p:
        proc, url = start_app(Path(sessions))
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            for shot in (studio_screenshot, studio_panels, studio_bars):
                page = open_page(browser, url)
                shot(page)
                page.close()
        finally:
            browser.close()
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
