"""Uploads through the real page: Gradio refuses files over --max-upload-mb itself (its launch
max_file_size), and the studio deletes its temporary copy of every upload it handled, read or
refused, so refused files do not pile up in Gradio's temp folder."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from .helpers import open_page, start_app, upload, wait_status, write_clip


@pytest.fixture(scope="module")
def studio(browser, tmp_path_factory):
    temp = tmp_path_factory.mktemp("gradio-temp")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(temp))  # start_app hands os.environ to the studio
    proc, url = start_app(tmp_path_factory.mktemp("sessions"), "--max-upload-mb", "1")
    mp.undo()
    page = open_page(browser, url)
    yield page, temp
    page.close()
    proc.terminate()
    proc.wait(timeout=30)


def uploaded_files(temp):
    return sorted(p.name for p in temp.rglob("*") if p.is_file() and p.suffix in (".wav", ".flac"))


def test_read_and_refused_uploads_leave_no_temp_file(studio, tmp_path):
    page, temp = studio
    upload(page, write_clip(tmp_path / "good.wav", 2.0))
    wait_status(page, "Loaded **good.wav**".replace("**", ""))
    assert uploaded_files(temp) == []
    (tmp_path / "broken.wav").write_bytes(b"this is not audio " * 200)
    upload(page, tmp_path / "broken.wav")
    assert wait_status(page, "could not be read as audio").startswith("⚠️")
    assert uploaded_files(temp) == []


def test_a_file_over_the_upload_limit_is_refused_by_gradio_with_a_sentence(studio, tmp_path):
    page, temp = studio
    path = tmp_path / "huge.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, (15 * 44100, 2)), 44100, subtype="PCM_16")
    status = page.inner_text("#status")
    upload(page, path)
    toast = page.wait_for_selector("text=exceed the maximum allowed size")
    assert 'File(s) exceed the maximum allowed size of 1.0 Mb: "huge.wav"' in toast.inner_text()
    assert page.inner_text("#status") == status and uploaded_files(temp) == []
