"""No take is ever lost, through the real UI over the fake engine: two tabs on one `?session=` URL
generating at once, a refresh in the middle of a generation, Accept/Discard while a generation
runs; page loads create no session folder. `[slow]` prompts make the fake engine take 0.15 s a
step, so a run is still going while the test acts."""
from __future__ import annotations

import numpy as np

from studio import session
from studio.api import SAMPLE_RATE
from studio.audio_io import read_track
from studio.edit import region_mask
from .helpers import (drag_region, open_page, upload, wait_attr, wait_status, wait_text,
                      write_clip)


def loaded_page(browser, url, clip):
    page = open_page(browser, url)
    upload(page, clip)
    wait_status(page, "Loaded")
    wait_attr(page, "ready", "1")
    return page


def start_run(page, prompt: str, steps: int, region=(0.5, 1.2)) -> None:
    """Paint a region, type the prompt and steps, press Generate, return once the steps run."""
    drag_region(page, *region)
    page.fill("#prompt textarea", prompt)
    box = page.locator("#steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")
    page.click("#generate")
    page.wait_for_function("() => document.body.innerText.includes('Take 1/1 · steps')")


def wait_takes(page, n: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('#takes input[type=radio]').length === {n}")


def sid_of(page) -> str:
    return page.url.split("session=")[1].split("&")[0]


def test_page_loads_create_nothing_and_bad_ids_are_said_once(studio, browser):
    url, sessions = studio
    before = sorted(sessions.iterdir())
    page = open_page(browser, url)
    assert "none yet" in page.inner_text("#session-info") and "session=" not in page.url
    for sid, message in [("../../etc", "is not a session id"), ("0123456789ab", "was not found")]:
        page.goto(f"{url}?session={sid}")
        assert "⚠️" in wait_status(page, message)
        page.wait_for_function("() => !location.search.includes('session=')")  # a refresh will not say it again
    page.get_by_role("tab", name="Prompt").click()  # a failed first generation stores nothing either
    page.fill("#src-prompt textarea", "[fail:gated] pads")
    page.click("#src-generate")
    wait_status(page, "HF_TOKEN")
    assert sorted(sessions.iterdir()) == before
    page.close()


def test_two_tabs_on_one_session_both_generating_keep_every_take(studio, browser, tmp_path):
    url, sessions = studio
    clip = write_clip(tmp_path / "shared.wav", 4.0, subtype="FLOAT")
    one = loaded_page(browser, url, clip)
    two = open_page(browser, one.url)  # the same ?session= URL in a second tab
    wait_text(two, "#versions", "Version 1 of 1")
    wait_attr(two, "ready", "1")

    start_run(one, "[slow] tab one", 16, (0.5, 1.2))
    two.click("#cancel")  # Cancel in one tab never stops another tab's run
    start_run(two, "[slow] tab two", 4, (2.0, 2.8))  # starts while tab one's run is going
    wait_status(two, "take ready")
    wait_status(one, "take ready")
    for page in (one, two):  # each tab shows both takes, also after a refresh
        wait_takes(page, 2)
    two.reload()
    wait_text(two, "#versions", "Version 1 of 1")
    wait_takes(two, 2)

    s = session.open_session(sessions, sid_of(one))
    source = read_track(clip)
    assert sorted(t.prompt for t in s.takes) == ["[slow] tab one", "[slow] tab two"]
    for t in s.takes:  # each take changed only its own tab's region
        audio = session.audio(s, t.id)
        outside = ~region_mask(audio.shape[1], t.regions)
        assert np.array_equal(audio[:, outside], source[:, outside])
        assert not np.allclose(audio[:, ~outside], source[:, ~outside])
        mine = (0.5, 1.2) if t.prompt.endswith("one") else (2.0, 2.8)
        assert [(round(r.start), round(r.end)) for r in t.regions] == [(round(mine[0]), round(mine[1]))]
    one.close()
    two.close()


def test_refresh_during_a_generation_loses_nothing(studio, browser, tmp_path):
    url, sessions = studio
    page = loaded_page(browser, url, write_clip(tmp_path / "groove.wav", 4.0))
    drag_region(page, 2.0, 2.5)
    page.click("#generate")
    wait_status(page, "take ready")
    start_run(page, "[slow] rain on a tin roof", 20)
    page.reload()  # the run goes on in the server
    wait_status(page, "Welcome back")
    assert page.input_value("#prompt textarea") == "[slow] rain on a tin roof"
    assert "source: groove.wav" in page.inner_text("#session-info")
    wait_takes(page, 2)  # the run's take shows up in the reloaded tab when it is stored
    page.reload()
    wait_takes(page, 2)
    s = session.open_session(sessions, sid_of(page))
    assert [t.id for t in s.takes] == ["t001", "t002"] and s.takes[1].prompt == "[slow] rain on a tin roof"
    page.close()


def test_accept_and_discard_during_a_generation_are_kept_and_undoable(studio, browser, tmp_path):
    url, sessions = studio
    page = loaded_page(browser, url, write_clip(tmp_path / "keys.wav", 4.0))
    drag_region(page, 1.0, 1.5)
    for n in (1, 2):
        page.click("#generate")
        page.wait_for_function(f"() => document.querySelectorAll('#takes input[type=radio]').length === {n}")
    start_run(page, "[slow] choir", 100, (2.5, 3.0))  # 15 s: room for the clicks below on a busy machine
    page.locator("#takes label", has_text="Take 1").click()
    page.click("#accept")
    wait_status(page, "now the current version")
    page.locator("#takes label", has_text="Take 2").click()
    page.click("#discard")
    wait_status(page, "Discarded take 2")
    assert len(session.open_session(sessions, sid_of(page)).takes) == 2  # the slow run is still going

    wait_status(page, "take ready")  # it finished: the accept and discard were not reverted
    wait_text(page, "#versions", "Version 2 of 2")
    assert [page.locator("#takes label").nth(i).inner_text().split(" ·")[0] for i in range(2)] == ["Take 1", "Take 3"]
    page.click("#undo")
    wait_status(page, "Undone.")
    wait_text(page, "#versions", "Version 1 of 2")
    s = session.open_session(sessions, sid_of(page))
    assert s.cursor == 0 and s.take("t002").discarded and len(s.takes) == 3
    assert s.versions[1].take == "t001" and s.take("t003").base == s.versions[0].id
    assert s.take("t003").frames == 4 * SAMPLE_RATE
    page.close()


def test_four_users_on_two_models_each_get_their_own_model(studio, browser, tmp_path):
    """Four visitors at once, two on small-music and two on small-sfx, all generating together:
    every take is made by its visitor's model (it equals that model's take made alone)."""
    from studio.api import EditRequest
    from studio.fake_engine import FakeEngine
    url, sessions = studio
    clip = write_clip(tmp_path / "clip.wav", 3.0, subtype="FLOAT")
    models = ["small-music", "small-sfx", "small-music", "small-sfx"]
    labels = {"small-music": "Small · music", "small-sfx": "Small · sound effects"}
    pages = []
    for model in models:
        page = loaded_page(browser, url, clip)
        if model != "small-music":  # the default needs no pick
            page.locator("#model input").fill(labels[model])
            page.keyboard.press("Enter")
            wait_status(page, "ready")
        page.uncheck("#random-seed input")
        page.fill("#seed input", "7")
        drag_region(page, 0.5, 1.2)
        page.fill("#prompt textarea", "[slow] shaker")
        box = page.locator("#steps input[type=number]")
        box.fill("6")
        box.press("Enter")
        pages.append(page)
    for page in pages:  # all four press Generate before any finishes (6 slow steps each)
        page.click("#generate")
    for page in pages:
        page.wait_for_function("() => document.querySelectorAll('#takes input[type=radio]').length === 1",
                               timeout=120_000)
    for page, model in zip(pages, models):
        s = session.open_session(sessions, sid_of(page))
        (take,) = s.takes
        assert take.model == model
        source = session.audio(s, s.current.id)
        alone = FakeEngine().edit(EditRequest(model=model, source=source, regions=take.regions, prompt="[slow] shaker",
                                              seed=7, steps=6))
        assert np.array_equal(session.audio(s, take.id), alone.audio)
        page.close()
