"""The package as users install it: a wheel built from the checkout, installed (not editable) into
a fresh virtual environment, used from another folder: the shipped model and detector come with
it, the entry points run, and nothing imports TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import venv

import pytest
from conftest import ROOT

from ferkit.paths import DEFAULT_MODEL_PATH

USE = """
import sys
import cv2
import ferkit
from ferkit import Recognizer, clips
assert "site-packages" in ferkit.__file__, ferkit.__file__
cv2.imwrite("photo.jpg", next(clips.demo_frames(1)))
faces = Recognizer()("photo.jpg")
print("faces:", len(faces), faces[0].label)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "jax", "torch"))
print("heavy:", heavy)
"""


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_MODEL_PATH.exists(), reason="no shipped ONNX model")
def test_the_wheel_installs_and_recognizes_faces_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next(wheels.glob("ferkit-*.whl"))
    assert wheel.stat().st_size < 20 * 2**20
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python, bin_dir = env_dir / "bin" / "python", env_dir / "bin"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    used = subprocess.run([python, "-c", USE], cwd=work, capture_output=True, text=True, timeout=300)
    assert used.returncode == 0, used.stderr[-2000:]
    assert "faces: 1" in used.stdout and "heavy: []" in used.stdout
    rows = subprocess.run(
        [bin_dir / "ferkit-analyze", "photo.jpg", "--quiet"], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert rows.returncode == 0, rows.stderr[-2000:]
    assert rows.stdout.splitlines()[1].startswith("photo.jpg,0,")
    live = subprocess.run(
        [bin_dir / "ferkit-live", "--source", "demo", "--no-display", "--max-frames", "5", "--output", "demo.mp4"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert live.returncode == 0, live.stderr[-2000:]
    assert (work / "demo.mp4").stat().st_size > 1000
    # What the installed commands say points at what is installed, not at a checkout's files.
    helped = subprocess.run([bin_dir / "ferkit-live", "--help"], cwd=work, capture_output=True, text=True, timeout=300)
    shown = "".join(helped.stdout.split())  # argparse wraps long paths anywhere
    assert "theshippedmodel'sexport(default:" + str(bin_dir.parent / "lib") in shown  # the installed copy
    (work / "mine.keras").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: a .keras file needs Keras
    refused = subprocess.run(
        [bin_dir / "ferkit-analyze", "photo.jpg", "--model", "mine.keras"], cwd=work, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "needs Keras" in refused.stderr and "not of the installed package" in refused.stderr


def test_paths_kept_in_a_metrics_file_are_shown_as_anyone_can_read_them(monkeypatch, tmp_path):
    from pathlib import Path

    from ferkit import paths

    home = tmp_path / "home" / "me"
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    assert paths.portable(home / ".cache" / "m.keras") == "~/.cache/m.keras"
    assert paths.portable("../shared/data") == "../shared/data"  # relative: as given
    assert paths.portable("/srv/data/fer2013") == "/srv/data/fer2013"
    if paths.IN_CHECKOUT:
        assert paths.portable(paths.PROJECT_DIR / "data" / "cache") == "data/cache"


def test_a_progress_bar_in_a_log_file_ends_its_line_and_redraws_rarely():
    # Sent to a file, tqdm's bar was redrawn ten times a second and, cleared at its end, left the
    # next line of the log joined to it.
    import io

    from ferkit.progress import bar

    log = io.StringIO()
    with bar(total=3, desc="work", leave=False, file=log) as shown:
        for _ in range(3):
            shown.update()
    assert log.getvalue().endswith("\n") and "3/3" in log.getvalue()
    assert shown.mininterval >= 60 and shown.miniters == 1  # counted as they come: no stale redraws every 10 s
