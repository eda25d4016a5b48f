"""Headless runs of the real-time pipeline on generated videos of the matplotlib demo photo."""

from __future__ import annotations

import csv
import json
import re

import cv2
import numpy as np
import pytest
from conftest import ROOT

import realtime
from ferkit import classify, clips, detect, networks, track, video
from ferkit.classify import predict_proba
from ferkit.errors import ParameterError
from ferkit.faces import CLASS_NAMES, crop_faces, eye_angle, prepare_face, to_grey
from ferkit.modelfile import read_class_names, save_model
from ferkit.paths import DEFAULT_MODEL_PATH, INT8_MODEL_PATH, KERAS_MODEL_PATH
from ferkit.recognizer import Recognizer


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
        copies: video.write_video(clips.demo_frames(24, copies=copies), folder / f"demo{copies}.avi")
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
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == clips.DEMO_SIZE


def test_boxes_sit_on_the_face(videos, model_path):
    """Detection on a downscaled frame maps boxes back onto the full-size face."""
    frame = next(clips.demo_frames(1))
    full = detect.FaceDetector(scale=1.0, scale_factor=1.1)(to_grey(frame))
    small = detect.FaceDetector()(to_grey(frame))
    assert len(full) == len(small) == 1
    assert track.iou(full[0], small[0]) > 0.6


def test_a_grey_image_source_is_drawn_and_photos_are_sent_to_analyze_for_a_table(model_path, tmp_path, capsys):
    grey = cv2.cvtColor(next(clips.demo_frames(1)), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "face.png"), grey)
    (tmp_path / "annotated_01.png").write_bytes(b"mine")  # numbered unlike this program's images: not in the way
    summary = run("--source", tmp_path / "face.png", "--model", model_path, "--output", tmp_path / "annotated.png")
    assert summary["frames"] == 1 and summary["faces"] == 1
    assert cv2.imread(str(tmp_path / "annotated.png")).shape == (480, 720, 3)
    assert (tmp_path / "annotated_01.png").read_bytes() == b"mine"
    run("--source", tmp_path / "face.png", "--model", model_path)  # nothing kept: the note names what works
    assert "note: nothing was saved; add --output FILE (or analyze.py for a table)" in capsys.readouterr().err
    # Rows by frame and seconds of this run, or one track across different people's photos,
    # would mislead: a photo or a folder of them is analyze.py's job.
    for source in (tmp_path / "face.png", tmp_path):
        for flag, value in (("--log", tmp_path / "faces.csv"), ("--report", tmp_path / "report")):
            with pytest.raises(SystemExit) as refused:
                realtime.parse_args(["--source", str(source), "--no-display", flag, str(value)])
            err = capsys.readouterr().err
            assert refused.value.code == 2 and f"{flag} follows faces through a video" in err
            assert f"analyze.py {source} --log faces.csv" in err
    assert not (tmp_path / "faces.csv").exists() and not (tmp_path / "report").exists()


def test_folder_source_of_mixed_sizes(model_path, tmp_path):
    frames = clips.demo_frames(2)
    cv2.imwrite(str(tmp_path / "a.jpg"), next(frames))
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.resize(next(frames), (360, 240)))
    assert run("--source", tmp_path, "--model", model_path, "--min-face", "20")["frames"] == 2


def test_demo_source_runs_and_says_when_nothing_was_saved(model_path, tmp_path, capsys):
    assert run("--source", "demo", "--model", model_path, "--max-frames", "5")["faces"] >= 4
    assert "note: nothing was saved; add --output FILE" in capsys.readouterr().err
    run("--source", "demo", "--model", model_path, "--max-frames", "2", "--log", tmp_path / "faces.csv")
    assert "nothing was saved" not in capsys.readouterr().err


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


@pytest.mark.parametrize("tta", ["flip", "crops"])
def test_live_tta_averages_the_views_evaluation_averages_in_one_call(model_path, tta, monkeypatch):
    """realtime.py --tta: the live classifier gives evaluate.py --tta's probabilities for one face
    and for three, with every view of every face in a single model call."""
    classifier = classify.ExpressionClassifier(model_path, tta=tta)
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
    calls = []
    predict = classifier.model.predict_on_batch
    monkeypatch.setattr(classifier.model, "predict_on_batch", lambda x: calls.append(len(x)) or predict(x))
    for n in (1, 3):
        expected = predict_proba(classifier.model, faces[:n], **classify.tta_options(tta))
        np.testing.assert_allclose(classifier(faces[:n]), expected, rtol=1e-4, atol=1e-6)
    views = 2 if tta == "flip" else 12
    assert calls == [1 << (views - 1).bit_length(), 1 << (3 * views - 1).bit_length()]  # padded, one call each
    # the mirror view counts: a face and its mirror image get the same answer with flip TTA
    np.testing.assert_allclose(classifier(faces[:1]), classifier(faces[:1, :, ::-1]), rtol=1e-4, atol=1e-6)


def test_tta_through_realtime_and_the_api(model_path, tmp_path):
    log = tmp_path / "faces.jsonl"
    summary = run("--source", "demo", "--model", model_path, "--tta", "crops", "--max-frames", 3, "--log", log)
    assert summary["faces"] == 3
    row = json.loads(log.read_text().splitlines()[0])
    assert set(row) == {"frame", "time", "face", "box", "label", "confidence", "probabilities"}
    with pytest.raises(SystemExit):
        realtime.parse_args(["--tta", "ten"])
    with pytest.raises(ParameterError, match="tta is 'ten'; use None"):
        classify.ExpressionClassifier(model_path, tta="ten")
    with pytest.raises(ParameterError, match="give it to one of them"):
        Recognizer(classify.ExpressionClassifier(model_path), tta="flip")


def test_log_dash_streams_csv_rows_on_stdout_and_the_summary_on_stderr(model_path, capsys):
    # For a program that reads the faces live: python realtime.py --no-display --log - | app
    realtime.main(["--source", "demo", "--model", str(model_path), "--no-display", "--max-frames", "4", "--log", "-"])
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(out.splitlines()))
    assert [int(r["frame"]) for r in rows] == [0, 1, 2, 3] and all(r["label"] in CLASS_NAMES for r in rows)
    assert "4 frames, 4 faces" in err and "frames, " not in out


def test_missing_window_support_says_how_to_get_it(model_path, monkeypatch, capsys):
    def no_gui(*_):
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    with pytest.raises(SystemExit):
        realtime.main(["--source", "demo", "--model", str(model_path)])
    err = capsys.readouterr().err
    assert "no window support" in err and "--no-display" in err


SHIPPED = KERAS_MODEL_PATH


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model at models/fer_cnn.keras")
def test_shipped_model_is_small_safe_and_labels_the_demo_face(tmp_path):
    import keras

    for shipped in (SHIPPED, DEFAULT_MODEL_PATH, INT8_MODEL_PATH):
        assert shipped.stat().st_size < 20 * 2**20
    model = keras.models.load_model(SHIPPED, safe_mode=True, compile=False)
    assert model.output_shape == (None, 7) and read_class_names(SHIPPED) == CLASS_NAMES
    log = tmp_path / "demo.jsonl"
    summary = realtime.run(
        realtime.parse_args(["--source", "demo", "--no-display", "--max-frames", "10", "--log", str(log)])
    )  # the default --model
    assert summary["faces"] == 10
    labels = {json.loads(line)["label"] for line in log.read_text().splitlines()}
    assert labels <= set(CLASS_NAMES) and len(labels) >= 1


def test_yunet_finds_the_hard_clip_faces_the_haar_cascade_misses():
    hard = list(clips.hard_frames(3))
    assert {scene for _, _, scene in hard} == set(clips.HARD_SCENES)
    yunet = clips.score_detector(detect.YuNetDetector(), hard)
    haar = clips.score_detector(detect.FaceDetector(), hard)
    assert yunet["recall"] >= 0.9 and yunet["false_per_frame"] <= 0.05, yunet
    assert haar["recall"] < yunet["recall"]
    assert yunet["recall_by_scene"]["no face"] is None  # nothing to find there


def test_upright_crop_levels_tilted_eyes():
    rng = np.random.default_rng(0)
    face = cv2.GaussianBlur(rng.integers(0, 256, (200, 200), dtype=np.uint8), (0, 0), 4)
    box, eyes = (50, 50, 100, 100), np.array([[80.0, 90.0], [120.0, 90.0]])
    straight = crop_faces(face, np.array([box]))[0].astype(float)
    matrix = cv2.getRotationMatrix2D((100, 100), -20, 1.0)
    tilted = cv2.warpAffine(face, matrix, (200, 200), borderMode=cv2.BORDER_REPLICATE)
    tilted_eyes = np.c_[eyes, np.ones(2)] @ matrix.T
    assert abs(abs(eye_angle(tilted_eyes)) - 20) < 1e-6
    upright = crop_faces(tilted, np.array([box]), tilted_eyes[None])[0].astype(float)
    unaligned = crop_faces(tilted, np.array([box]))[0].astype(float)
    inner = (slice(15, 85), slice(15, 85))
    assert np.abs(upright - straight)[inner].mean() < 0.3 * np.abs(unaligned - straight)[inner].mean()


def test_report_writes_a_timeline_per_face_and_a_summary(model_path, tmp_path):
    report = tmp_path / "report"
    summary = run("--source", "demo", "--model", model_path, "--max-frames", "20", "--report", report)
    with open(report / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and int(rows[0]["frames"]) == 20 == summary["faces"]
    assert float(rows[0]["last_second"]) == pytest.approx(19 / 30, abs=1e-3)  # video time, 30 frames/s
    assert sum(float(rows[0][f"share_{name}"]) for name in CLASS_NAMES) == pytest.approx(1, abs=1e-3)
    assert (report / f"face_{rows[0]['face']}.png").stat().st_size > 10_000


@pytest.mark.parametrize("output", ["out.avi", "still.png"])
def test_a_second_run_keeps_the_first_runs_files_unless_told(model_path, tmp_path, capsys, output):
    base = ["--source", "demo", "--model", str(model_path), "--no-display", "--quiet", "--max-frames", "3"]
    outputs = {"--output": tmp_path / output, "--log": tmp_path / "faces.csv", "--report": tmp_path / "r"}
    realtime.main([*base, *(str(a) for pair in outputs.items() for a in pair)])
    if output == "still.png":  # one image per frame: still.png, still_1.png, still_2.png
        assert all((tmp_path / name).exists() for name in ("still.png", "still_1.png", "still_2.png"))
    first = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}
    capsys.readouterr()
    for flag, path in outputs.items():  # each output alone is in the way: refused when the command is read
        with pytest.raises(SystemExit) as refused:
            realtime.main([*base, flag, str(path)])
        assert refused.value.code == 2 and "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # all of them: the first three named, the rest counted
        realtime.main([*base, *(str(a) for pair in outputs.items() for a in pair)])
    assert re.search(r"and \d+ more exist", capsys.readouterr().err)
    with pytest.raises(SystemExit):  # a log where the report writes its summary
        realtime.main([*base, "--log", str(tmp_path / "new" / "summary.csv"), "--report", str(tmp_path / "new")])
    assert "both name" in capsys.readouterr().err
    if output == "still.png":  # only a numbered image of the first run is in the way
        (tmp_path / "still.png").rename(tmp_path / "kept.png")
        with pytest.raises(SystemExit):
            realtime.main([*base, "--output", str(tmp_path / "still.png")])
        assert "still_1.png" in capsys.readouterr().err
        (tmp_path / "kept.png").rename(tmp_path / "still.png")
    assert {p: p.stat().st_mtime_ns for p in first} == first
    realtime.main([*base, *(str(a) for pair in outputs.items() for a in pair), "--overwrite"])
    for path in (outputs["--output"], outputs["--log"], outputs["--report"] / "summary.csv"):
        assert path.stat().st_mtime_ns != first[path]
    if output == "still.png":  # the summary names the numbered images; a shorter rerun names, keeps, the rest
        assert f"wrote {tmp_path / 'still.png'} ... still_2.png (3 images)" in capsys.readouterr().out
        shorter = [*base[:-1], "2", "--output", str(tmp_path / output), "--overwrite"]
        realtime.main(shorter)
        assert "note: 1 numbered image(s) of an earlier run remain beside these" in capsys.readouterr().err
        assert (tmp_path / "still_2.png").exists()


def test_start_is_quiet_unless_verbose(model_path, tmp_path):
    import subprocess
    import sys

    command = [sys.executable, "realtime.py", "--source", "demo", "--no-display", "--max-frames", "3"]
    command += ["--model", str(model_path)]
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("3 frames, 3 faces")
    assert "oneDNN" not in done.stderr and "absl" not in done.stderr and "I0000" not in done.stderr, done.stderr


def test_a_large_photo_searched_in_tiles_finds_the_faces_a_whole_search_finds(monkeypatch):
    # Tiles bound the detector's memory on huge photos (an 8000x6000 one took 3.5 GB at once);
    # here small tiles on a small photo, faces across their borders, against one whole search.
    photo = cv2.imread(str(ROOT / "models" / "grace_hopper.jpg"))
    canvas = np.full((1300, 2000, 3), 128, np.uint8)
    for left, top in ((0, 0), (560, 650), (1300, 80)):  # across the tiles' edges (656 long, 336 apart)
        canvas[top : top + 600, left : left + 512] = photo
    detector = detect.YuNetDetector()
    monkeypatch.setattr(detect, "TILE_ABOVE", 10**9)
    whole = detector.detect_still(canvas)[0]
    monkeypatch.setattr(detect, "TILE_ABOVE", 500_000)
    monkeypatch.setattr(detect, "TILE", 700)
    assert len(detect._tiles(2000)) == 5 and len(detect._tiles(1300)) == 3  # 15 tiles
    tiled = detector.detect_still(canvas)[0]
    assert len(whole) == 3 and len(tiled) == 3
    # The same faces: a tile's edge shifts YuNet's box by a few pixels, and which of the scales'
    # boxes wins may change with it (measured: at most 12 pixels on 215).
    for a, b in zip(tiled[np.argsort(tiled[:, 0])], whole[np.argsort(whole[:, 0])]):
        overlap = np.prod(np.maximum(0, np.minimum(a[:2] + a[2:], b[:2] + b[2:]) - np.maximum(a[:2], b[:2])))
        assert overlap / (np.prod(a[2:]) + np.prod(b[2:]) - overlap) > 0.8
