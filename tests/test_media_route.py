"""The page's route to a session's files: keyed by session id, never by the server's path."""
import numpy as np
from starlette.applications import Starlette
from starlette.testclient import TestClient

from studio import session
from studio.api import SAMPLE_RATE
from studio.ui_common import MEDIA_ROUTE, file_url, media_routes


def _client(root):
    return TestClient(Starlette(routes=media_routes(root)))


def test_a_session_file_is_served_by_id_and_no_url_names_the_server_path(tmp_path):
    root = tmp_path / "sessions"
    s = session.set_source(session.create(root), np.zeros((2, SAMPLE_RATE), np.float32), "source")
    wav = session.track_file(s, "current")
    url = file_url(wav)
    assert url.startswith(f"{MEDIA_ROUTE}/{s.id}/") and str(tmp_path) not in url
    got = _client(root).get(url)
    assert got.status_code == 200 and got.content == wav.read_bytes()
    part = _client(root).get(url, headers={"Range": "bytes=4-15"})  # the audio element seeks so
    assert part.status_code == 206 and part.content == wav.read_bytes()[4:16]


def test_nothing_outside_a_session_is_served(tmp_path):
    root = tmp_path / "sessions"
    s = session.set_source(session.create(root), np.zeros((2, 100), np.float32), "source")
    (tmp_path / "secret.txt").write_text("host's")
    (s.path("versions") / ".tmp-half.wav").write_bytes(b"half")
    (s.path("versions") / "link.wav").symlink_to(tmp_path / "secret.txt")
    client = _client(root)
    other = "0" * 32
    for url in (f"{MEDIA_ROUTE}/{s.id}/../../secret.txt", f"{MEDIA_ROUTE}/{s.id}/%2e%2e/%2e%2e/secret.txt",
                f"{MEDIA_ROUTE}/{s.id}/versions/link.wav", f"{MEDIA_ROUTE}/{s.id}/versions/.tmp-half.wav",
                f"{MEDIA_ROUTE}/{s.id}/versions/missing.wav", f"{MEDIA_ROUTE}/{other}/session.json",
                f"{MEDIA_ROUTE}/..%2f..%2fsecret.txt/x", f"{MEDIA_ROUTE}/{s.id}/versions"):
        got = client.get(url)
        assert got.status_code == 404 and "host's" not in got.text and got.text in ("Not found.", "Not Found"), url
