"""Remake the README's screenshot of the toolkit's panels (assets/studio-panels.png).

    python -m assets.make_screenshot

Runs the studio over the fake engine (no weights), loads the arpeggio demo, picks the
small-music-base model (so the guidance section shows), paints a region, opens the LoRA panel,
makes a take with step previews on, and opens the seam audition on the take's first border.
Needs Debian's chromium and playwright, as the browser tests do.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import ARGS, CHROMIUM
from tests.browser.helpers import drag_region, open_page, start_app, upload, wait_attr, wait_status, wait_text

HERE = Path(__file__).resolve().parent
OUT = HERE / "studio-panels.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as sessions, sync_playwright() as p:
        proc, url = start_app(Path(sessions))
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = open_page(browser, url)
            upload(page, HERE / "arp-120bpm.wav")
            wait_status(page, "Loaded")
            wait_attr(page, "ready", "1")
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
            page.screenshot(path=str(OUT), full_page=True)
            print(f"wrote {OUT}")
        finally:
            browser.close()
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
