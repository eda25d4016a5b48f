"""Headless runs of the real-time pipeline on generated videos of the matplotlib demo photo."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

import realtime
from ferkit import classify, detect, networks, track, video
from ferkit.classify import predict_proba
from ferkit.faces import CLASS_NAMES, prepare_face, to_grey
from ferkit.modelfile import read_class_names, save_model
from ferkit.paths import DEFAULT_MODEL_PATH


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """An (untrained) model file in the saved format; these tests check the pipeline, not accuracy."""
    import keras

    keras.utils.set_random_seed(0)
    return save_model(networks.build_model(arch="vgg"), tmp_path_factory.mktemp("m") / "m.keras")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {
        copies: video.write_video(video.demo_frames(24, copies=copies), folder / f"demo{copies}.avi")
        for copies in (1, 2)
    }


def run(*argv):
    return realtime.run(realtime.parse_args(["--no-display", *map(str, argv)]))


@pytest.mark.parametrize("copies", [1, 2])
def test_faces_are_found_logged_and_drawn(videos, model_path, tmp_path, copies):
    out, log = tmp_path / "out.avi", tmp_path / "faces.csv"
    summary = run("--source", videos[copies], "--model", model_path, "--output", out, "--log", log)
    assert summary["frames"] == 24
    with open(log) as f:
        rows = list(csv.DictReader(f))
    per_frame = np.bincount([int(r["frame"]) for r in rows], minlength=24)
    assert np.mean(per_frame == copies) >= 0.9, per_frame
    assert len(rows) == summary["faces"]
    assert {r["label"] for r in rows} <= set(CLASS_NAMES)
    for r in rows:
        assert abs(sum(float(r[n]) for n in CLASS_NAMES) - 1) < 1e-3
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == video.DEMO_SIZE


def test_boxes_sit_on_the_face(videos, model_path):
    """Detection on a downscaled frame maps boxes back onto the full-size face."""
    frame = next(video.demo_frames(1))
    full = detect.FaceDetector(scale=1.0, scale_factor=1.1)(to_grey(frame))
    small = detect.FaceDetector()(to_grey(frame))
    assert len(full) == len(small) == 1
    assert track.iou(full[0], small[0]) > 0.6


def test_jsonl_log_and_grey_image_source(model_path, tmp_path):
    grey = cv2.cvtColor(next(video.demo_frames(1)), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "face.png"), grey)
    summary = run(
        "--source",
        tmp_path / "face.png",
        "--model",
        model_path,
        "--output",
        tmp_path / "annotated.png",
        "--log",
        tmp_path / "log.jsonl",
    )
    assert summary["frames"] == 1 and summary["faces"] == 1
    row = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert set(row) == {"frame", "time", "face", "box", "label", "confidence", "probabilities"}
    assert cv2.imread(str(tmp_path / "annotated.png")).shape == (480, 720, 3)


def test_folder_source_of_mixed_sizes(model_path, tmp_path):
    frames = video.demo_frames(2)
    cv2.imwrite(str(tmp_path / "a.jpg"), next(frames))
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.resize(next(frames), (360, 240)))
    assert run("--source", tmp_path, "--model", model_path, "--min-face", "20")["frames"] == 2


def test_demo_source_runs(model_path):
    assert run("--source", "demo", "--model", model_path, "--max-frames", "5")["faces"] >= 4


def test_camera_that_will_not_open_names_the_index(model_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        realtime.main(["--source", "57", "--no-display", "--model", str(model_path)])
    assert stopped.value.code == 2
    assert "could not open camera 57" in capsys.readouterr().err


def test_unreadable_video_is_one_clear_error(model_path, tmp_path, capsys):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(SystemExit):
        realtime.main(["--source", str(tmp_path / "broken.mp4"), "--no-display", "--model", str(model_path)])
    assert "could not read video" in capsys.readouterr().err


def test_missing_model_says_how_to_get_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        realtime.main(["--source", "demo", "--no-display", "--model", str(tmp_path / "none.keras")])
    err = capsys.readouterr().err
    assert "not found" in err and "train_cnn.py" in err


def test_smoothing_averages_per_face_over_the_window():
    smoother = track.FaceSmoother(window=3)
    a, b = np.eye(7)[3], np.eye(7)[5]
    box = (100, 100, 50, 50)
    for proba in (a, a, b):
        smoothed, ids = smoother.update([box], [proba])
    np.testing.assert_allclose(smoothed[0], (2 * a + b) / 3)
    smoothed, _ = smoother.update([(104, 102, 50, 50)], [b])  # moved slightly: same face
    np.testing.assert_allclose(smoothed[0], (a + 2 * b) / 3)
    smoothed, ids2 = smoother.update([(104, 102, 50, 50), (400, 100, 50, 50)], [b, a])
    assert ids2[0] == ids[0] and ids2[1] != ids[0]
    np.testing.assert_allclose(smoothed[1], a)  # a new face starts its own history


def test_smoothing_off_passes_probabilities_through():
    smoother = track.FaceSmoother(window=1)
    for proba in np.eye(7):
        smoothed, _ = smoother.update([(0, 0, 10, 10)], [proba])
        np.testing.assert_allclose(smoothed[0], proba)


def test_classifier_matches_the_training_preprocessing(model_path):
    """All faces in one call, padded batches, same numbers as the evaluation path."""
    classifier = classify.ExpressionClassifier(model_path)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (60 + 10 * i, 55 + 7 * i), dtype=np.uint8) for i in range(3)]
    expected = predict_proba(classifier.model, np.stack([prepare_face(c) for c in crops]))
    np.testing.assert_allclose(classifier(crops), expected, rtol=1e-4, atol=1e-5)


def test_missing_window_support_says_how_to_get_it(model_path, monkeypatch, capsys):
    def no_gui(*_):
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    with pytest.raises(SystemExit):
        realtime.main(["--source", "demo", "--model", str(model_path)])
    err = capsys.readouterr().err
    assert "no window support" in err and "--no-display" in err


SHIPPED = DEFAULT_MODEL_PATH


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model at models/fer_cnn.keras")
def test_shipped_model_is_small_safe_and_labels_the_demo_face(tmp_path):
    import keras

    assert SHIPPED.stat().st_size < 20 * 2**20
    model = keras.models.load_model(SHIPPED, safe_mode=True, compile=False)
    assert model.output_shape == (None, 7) and read_class_names(SHIPPED) == CLASS_NAMES
    log = tmp_path / "demo.jsonl"
    summary = realtime.run(
        realtime.parse_args(["--source", "demo", "--no-display", "--max-frames", "10", "--log", str(log)])
    )  # the default --model
    assert summary["faces"] == 10
    labels = {json.loads(line)["label"] for line in log.read_text().splitlines()}
    assert labels <= set(CLASS_NAMES) and len(labels) >= 1
