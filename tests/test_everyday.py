"""Everyday jobs: a folder of photos into a table, the API on paths, PIL images, lists and any
reasonable array, stills searched at several scales, browser-playable video, quick --help."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT

import analyze
import ferkit
import realtime
from ferkit import Pipeline, Recognizer, clips
from ferkit import analyze as analyze_module
from ferkit.classify import ExpressionClassifier
from ferkit.errors import SourceError
from ferkit.paths import DEFAULT_MODEL_PATH

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL_PATH.exists(), reason="no shipped model")


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer()


@pytest.fixture
def photos(tmp_path):
    """Six photos with one face each, two levels deep, and a file that is not an image."""
    root = tmp_path / "photos"
    (root / "trip" / "day2").mkdir(parents=True)
    for i, frame in enumerate(clips.demo_frames(6)):
        folder = root if i < 2 else root / "trip" if i < 4 else root / "trip" / "day2"
        cv2.imwrite(str(folder / f"p{i}.{'png' if i % 2 else 'jpg'}"), frame)
    (root / "notes.jpg").write_text("not an image")
    return root


def test_a_folder_of_photos_becomes_one_row_per_face(photos, tmp_path, capsys):
    out = tmp_path / "results.csv"
    summary = analyze.main([str(photos), "--log", str(out), "--annotate", str(tmp_path / "ann"), "--quiet"])
    rows = list(csv.DictReader(out.open()))
    assert summary["images"] == 6 and summary["faces"] == 6 and len(rows) == 6
    assert summary["unreadable"] == [str(photos / "notes.jpg")]
    assert {r["file"] for r in rows} == {
        "p0.jpg",
        "p1.png",
        "trip/p2.jpg",
        "trip/p3.png",
        "trip/day2/p4.jpg",
        "trip/day2/p5.png",
    }
    for row in rows:
        probabilities = [float(row[c]) for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")]
        assert abs(sum(probabilities) - 1) < 2e-3 and row["face"] == "0"
        assert float(row["confidence"]) == max(probabilities) and int(row["w"]) > 40
        assert cv2.imread(str(tmp_path / "ann" / row["file"])) is not None  # named after its source
    assert "skipped" in capsys.readouterr().err

    analyze.main([str(photos / "p0.jpg"), "--log", "-", "--quiet"])  # rows on the terminal
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("file,face,x,y,w,h,label,confidence") and printed[1].startswith("p0.jpg,0,")
    analyze.main([str(photos / "p1.png"), "--log", str(tmp_path / "r.jsonl"), "--quiet"])
    row = json.loads((tmp_path / "r.jsonl").read_text())
    assert row["file"] == "p1.png" and len(row["probabilities"]) == 7


def test_gif_photos_are_read_and_phone_formats_opencv_cannot_read_are_named(photos, tmp_path, capsys):
    # A folder exported from a phone: HEIC photos were passed over in silence ("no images" when
    # that was all there was), GIFs too although this OpenCV reads them.
    if ".gif" not in analyze_module.photo_suffixes():
        pytest.skip("this OpenCV reads no GIF (4.11 and later do)")
    frame = next(iter(clips.demo_frames(7)))
    assert cv2.imwrite(str(photos / "trip" / "moment.gif"), frame)
    (photos / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    summary = analyze.main([str(photos), "--log", str(tmp_path / "r.csv"), "--quiet"])
    assert summary["images"] == 7 and summary["faces"] == 7
    assert "trip/moment.gif" in {r["file"] for r in csv.DictReader((tmp_path / "r.csv").open())}
    err = capsys.readouterr().err
    assert "note: left out 1 photo(s) in formats OpenCV cannot read (.heic)" in err and "convert them to JPEG" in err
    only_heic = tmp_path / "iphone"
    only_heic.mkdir()
    (photos / "IMG_0001.HEIC").rename(only_heic / "IMG_0001.HEIC")
    for source in (only_heic, only_heic / "IMG_0001.HEIC"):  # a folder of them, or one by name
        with pytest.raises(SystemExit) as refused:
            analyze.main([str(source), "--quiet"])
        err = capsys.readouterr().err
        assert refused.value.code != 0 and "no images OpenCV reads" in err and "convert them to JPEG" in err
        assert "Traceback" not in err


def test_photos_of_one_name_from_two_folders_keep_their_own_rows_and_copies(tmp_path, capsys):
    frames = list(clips.demo_frames(2))
    for folder, frame in zip(("a", "b"), frames):
        (tmp_path / "dup" / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "dup" / folder / "img.jpg"), frame)
    cv2.imwrite(str(tmp_path / "dup" / "a" / "blank.png"), np.full((240, 320, 3), 128, np.uint8))
    a, b = tmp_path / "dup" / "a", tmp_path / "dup" / "b"
    table, copies = tmp_path / "r.csv", tmp_path / "ann"
    # a/img.jpg given twice (itself and its folder): analysed once
    argv = [str(a), str(b), str(a / "img.jpg"), "--log", str(table), "--annotate", str(copies), "--quiet"]
    summary = analyze.main(argv)
    rows = list(csv.DictReader(table.open()))
    assert sorted(r["file"] for r in rows) == ["a/img.jpg", "b/img.jpg"]  # named from the folder both share
    assert summary["images"] == 3 and summary["no_face"] == ["a/blank.png"]
    assert "1 without a face (no row; e.g. a/blank.png)" in capsys.readouterr().err
    assert (copies / "a/img.jpg").exists() and (copies / "b/img.jpg").exists()  # neither replaced the other
    assert not np.array_equal(cv2.imread(str(copies / "a/img.jpg")), cv2.imread(str(copies / "b/img.jpg")))


def test_a_later_run_over_the_photos_skips_the_annotated_copies_inside_them(photos, tmp_path, capsys):
    analyze.main([str(photos), "--annotate", str(photos / "annotated"), "--quiet"])
    capsys.readouterr()
    again = analyze.main([str(photos), "--quiet"])  # the copies are not photos to count again
    assert again["images"] == 6 and again["faces"] == 6
    assert f"note: skipped {photos / 'annotated'}: annotated copies" in capsys.readouterr().err
    copies = analyze.main([str(photos / "annotated"), "--quiet"])  # given by name, they are read
    assert copies["images"] == 6


def test_a_second_run_keeps_the_first_runs_table_and_copies_unless_told(photos, tmp_path, capsys):
    table, copies = tmp_path / "results.csv", tmp_path / "ann"
    analyze.main([str(photos), "--log", str(table), "--annotate", str(copies), "--quiet"])
    first = {p: p.stat().st_mtime_ns for p in [table, *copies.rglob("*.*")]}
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:  # the same table: refused when the command is read
        analyze.main([str(photos), "--log", str(table), "--quiet"])
    assert refused.value.code == 2 and "results.csv exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # a new table, the same copies: refused before any image is read
        analyze.main([str(photos), "--log", str(tmp_path / "new.csv"), "--annotate", str(copies), "--quiet"])
    err = capsys.readouterr().err
    assert refused.value.code != 0 and "already holds 6 file(s) named as" in err and "--overwrite" in err
    assert {p: p.stat().st_mtime_ns for p in first} == first and not (tmp_path / "new.csv").exists()
    analyze.main([str(photos), "--log", str(table), "--annotate", str(copies), "--quiet", "--overwrite"])
    assert all(p.stat().st_mtime_ns != t for p, t in first.items())


def test_a_folder_of_the_users_own_files_is_refused_for_copies_even_with_overwrite(photos, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "p0.jpg").write_bytes(b"my own photo")  # named as a copy this run would write
    (mine / "holiday.jpg").write_bytes(b"another")  # a marker beside it would hide it from later runs
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit) as refused:
            analyze.main([str(photos), "--annotate", str(mine), "--quiet", *extra])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and "already holds files analyze.py did not write (holiday.jpg, p0.jpg)" in err
        assert "--overwrite" not in err and "--annotate annotated/" in err
    assert sorted(p.name for p in mine.iterdir()) == ["holiday.jpg", "p0.jpg"]
    assert (mine / "p0.jpg").read_bytes() == b"my own photo"
    (mine / "p0.jpg").unlink()
    (mine / "holiday.jpg").unlink()
    (mine / ".DS_Store").write_bytes(b"")  # what Finder leaves in an empty folder: still empty
    (mine / "Thumbs.DB").write_bytes(b"")  # and Windows, in any case
    (mine / "empty").mkdir()  # a folder with no files in it holds nothing to lose
    (mine / "faces.csv").write_text("an earlier table\n")  # this run's own --log (--overwrite replaces it)
    argv = [str(photos), "--annotate", str(mine), "--log", str(mine / "faces.csv"), "--quiet", "--overwrite"]
    assert analyze.main(argv)["images"] == 6
    # A subfolder of the copies (marked at their top) takes a later run's copies of that subfolder.
    trip = ["--annotate", str(mine / "trip"), "--quiet"]
    with pytest.raises(SystemExit):
        analyze.main([str(photos / "trip"), *trip])
    assert "add --overwrite to replace them" in capsys.readouterr().err
    assert analyze.main([str(photos / "trip"), *trip, "--overwrite"])["images"] == 4


def test_a_stop_while_an_image_is_written_keeps_the_table_and_the_copies_in_step(
    photos, tmp_path, monkeypatch, capsys, python_ctrl_c
):
    import signal

    import ferkit.analyze

    written, imwrite = [], cv2.imwrite

    def imwrite_and_ctrl_c_at_the_third(path, image):
        written.append(path)
        if len(written) == 3:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while the third annotated copy is written
        return imwrite(path, image)

    monkeypatch.setattr(ferkit.analyze.cv2, "imwrite", imwrite_and_ctrl_c_at_the_third)
    out, annotated = tmp_path / "results.csv", tmp_path / "ann"
    with pytest.raises(SystemExit) as stopped:
        analyze.main([str(photos), "--log", str(out), "--annotate", str(annotated), "--quiet"])
    assert stopped.value.code == 130
    assert "interrupted after 3 of 7 images" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and all((annotated / row["file"]).is_file() for row in rows)
    assert len([p for p in annotated.rglob("p*") if p.is_file()]) == 3


def test_the_api_takes_paths_pil_images_arrays_and_lists(recognizer, photos, monkeypatch):
    from PIL import Image

    frame = cv2.imread(str(photos / "p0.jpg"))
    reference = recognizer(frame)
    assert len(reference) == 1
    for image in (
        photos / "p0.jpg",
        str(photos / "p0.jpg"),
        Image.open(photos / "p0.jpg"),
        frame.astype(np.float32) / 255,
        frame.astype(np.float64),
        frame.astype(np.uint16) * 257,
        cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA),
    ):
        faces = recognizer(image)
        assert len(faces) == 1 and faces[0].label == reference[0].label, type(image)
        assert abs(faces[0].confidence - reference[0].confidence) < 0.02
    with pytest.warns(UserWarning, match=r"reach only \d+ of 65535.*\(image >> 4\)\.astype\(np\.uint8\)"):
        recognizer(frame.astype(np.uint16) * 16)  # a 12-bit camera's frame, as it comes
    calls = []
    original = ExpressionClassifier.__call__
    monkeypatch.setattr(ExpressionClassifier, "__call__", lambda self, f: calls.append(len(f)) or original(self, f))
    many = recognizer([photos / "p0.jpg", frame, np.zeros((40, 60), np.uint8), photos / "trip" / "p2.jpg"])
    assert [len(f) for f in many] == [1, 1, 0, 1] and calls == [3]  # the faces of all images in one call
    assert many[0][0].label == reference[0].label


def test_phone_photos_stored_on_their_side_are_read_upright(recognizer, photos, tmp_path):
    from PIL import Image

    from ferkit.faces import read_image

    frame = cv2.imread(str(photos / "p0.jpg"))
    reference = recognizer(frame)
    # stored as the sensor saw it (turned 90 degrees), with the EXIF tag that turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(frame[:, :, ::-1]).copy()).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    for image in (tmp_path / "phone.jpg", Image.open(tmp_path / "phone.jpg")):
        faces = recognizer(image)
        assert len(faces) == 1 and faces[0].label == reference[0].label, type(image)
        assert np.abs(np.subtract(faces[0].box, reference[0].box)).max() <= 8
    # all eight orientations, in both byte orders, as OpenCV's own converting read turns them
    pattern = np.zeros((30, 50, 3), np.uint8)
    pattern[:15, :25], pattern[15:, 25:], pattern[:5] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    jpeg = cv2.imencode(".jpg", pattern, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    for orientation in range(1, 9):
        for order, byteorder in ((b"II", "little"), (b"MM", "big")):
            tiff = order + (42).to_bytes(2, byteorder) + (8).to_bytes(4, byteorder) + (1).to_bytes(2, byteorder)
            tiff += (0x0112).to_bytes(2, byteorder) + (3).to_bytes(2, byteorder) + (1).to_bytes(4, byteorder)
            tiff += orientation.to_bytes(2, byteorder) + bytes(2) + bytes(4)
            app1 = b"\xff\xe1" + (8 + len(tiff)).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
            path = tmp_path / f"o{orientation}{order.decode()}.jpg"
            path.write_bytes(jpeg[:2] + app1 + jpeg[2:])
            np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)), err_msg=path.name)


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".webp", {"lossless": True}), (".tiff", {})])
def test_png_webp_and_tiff_photos_with_an_orientation_tag_are_read_upright_as_pil_turns_them(tmp_path, suffix, options):
    # Editors and some phones save PNG and WebP with the EXIF tag too; OpenCV applies it to JPEG
    # only (and to TIFF itself), so these came in on their side.
    from PIL import Image, ImageOps

    from ferkit.faces import read_image

    pattern = np.zeros((30, 50, 3), np.uint8)
    pattern[:15, :25], pattern[15:, 25:], pattern[:5] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}{suffix}"
        Image.fromarray(pattern).save(path, exif=exif.tobytes(), **options)
        upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))[:, :, ::-1]
        np.testing.assert_array_equal(read_image(path), upright, err_msg=path.name)


@pytest.mark.parametrize(
    "bad, why",
    [
        (None, "no image"),
        (np.zeros((9, 9, 2), np.uint8), "not grey"),
        (np.zeros((9, 9), bool), "mask"),
        (np.full((9, 9), np.nan, np.float32), "NaN"),
        (np.full((9, 9), 1000, np.int64), "range over"),
        (np.full((9, 9), -2.0), "range over"),
        ("no/such/photo.jpg", "not found"),
        (b"\xff\xd8\xff\xe0 an uploaded JPEG", "decode them first"),
        (np.zeros((3, 40, 50), np.uint8), "channels first"),
        (np.zeros((1, 3, 40, 50), np.float32), "channels first"),
        ("https://example.com/face.jpg", "web address"),
        (ROOT / "models", "is a folder"),
    ],
)
def test_an_image_the_api_cannot_read_is_one_typed_error(recognizer, bad, why):
    with pytest.raises(SourceError, match=why):
        recognizer(bad)
    with pytest.raises(SourceError, match=why):
        Pipeline(recognizer).process(bad)
    with pytest.raises(SourceError, match=f"image 1 of the 2 given: .*{why}"):  # which one, in a list
        recognizer([np.zeros((60, 60), np.uint8), bad])


def test_a_pipeline_called_on_video_frames_gives_faces_that_keep_their_track_id(recognizer):
    frames = list(clips.demo_frames(90))[:6]  # a slow drift: the face moves a little per frame
    called, processed = Pipeline(recognizer), Pipeline(recognizer)
    for frame in frames:
        faces = called(frame)
        boxes, probabilities, ids = processed.process(frame)  # the same steps, as arrays
        assert [f.track_id for f in faces] == list(ids) and len(faces) == 1
        assert faces[0].box == tuple(int(v) for v in boxes[0])
        np.testing.assert_allclose(list(faces[0].probabilities.values()), probabilities[0], rtol=1e-6)
    assert faces[0].track_id == 0  # one face through six frames: one id
    rgb = Pipeline(Recognizer(channels="rgb"))  # the frame is read once, in the recognizer's channels
    assert rgb(frames[0][:, :, ::-1])[0].label == Pipeline(recognizer)(frames[0])[0].label


def test_a_pipeline_looks_again_when_the_frame_size_changes(recognizer):
    pipeline = Pipeline(recognizer, detect_every=10)  # would reuse the boxes for 9 more frames
    assert len(pipeline.process(next(clips.demo_frames(1)))[0]) == 1
    boxes, probabilities, ids = pipeline.process(np.zeros((80, 100, 3), np.uint8))
    assert len(boxes) == len(probabilities) == len(ids) == 0  # not the old box, far outside this frame


def test_settings_and_results_the_api_cannot_use_are_one_typed_error(recognizer, photos):
    from ferkit import FaceDetector, ParameterError

    assert Recognizer(None, detector="haar").tta is None  # None: the shipped model; a detector by name
    assert isinstance(Recognizer(detector=FaceDetector).detector, FaceDetector)  # the class: its defaults
    for build, why in (
        (lambda: Recognizer(detector="hog"), "use one of haar, yunet"),
        (lambda: Recognizer(detector=3), "give YuNetDetector"),
        (lambda: Recognizer(align="no"), "give True"),
        (lambda: Pipeline(recognizer, detect_every=0), "1 or more"),
        (lambda: ferkit.YuNetDetector(min_face=-5), "1 or more"),
        (lambda: FaceDetector(min_neighbors=1.5), "whole number"),
    ):
        with pytest.raises(ParameterError, match=why):
            build()
    with pytest.raises(SourceError, match="not found; give the path of haarcascade"):
        FaceDetector(cascade="no/such/cascade.xml")
    photo = cv2.imread(str(photos / "p0.jpg"))
    faces = recognizer(photo)
    assert recognizer.annotate(photo, faces[0]).shape == photo.shape  # one Face is one face
    for wrong, why in (
        (recognizer([photo]), "a list of lists"),
        (["box"], "something other than Face"),
        (faces, "do not fit this image"),
    ):
        with pytest.raises(ParameterError, match=why):
            recognizer.annotate(photo if why != "do not fit this image" else photo[:100, :100], wrong)


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 3), (3, 500, 3), (7, 7)])
def test_tiny_images_have_no_faces_and_no_error(recognizer, shape):
    assert recognizer(np.zeros(shape, np.uint8)) == []
    assert len(Pipeline(recognizer).process(np.zeros(shape, np.uint8))[0]) == 0


def test_stills_find_small_faces_and_faces_that_fill_a_large_photo(recognizer):
    small = list(clips.small_face_stills(8, size=(1280, 720), sides=(32, 40)))
    found = sum(
        clips.match_faces(np.array([f.box for f in recognizer(frame)]).reshape(-1, 4), truth)
        for frame, truth, _ in small
    )
    assert found == len(small)
    photo = clips.demo_photo()  # a phone-sized photo (4032 px) whose face is ~1600 px
    big = cv2.resize(photo, None, fx=1600 / clips.DEMO_FACE[2], fy=1600 / clips.DEMO_FACE[2])
    canvas = np.full((3024, 4032, 3), 90, np.uint8)
    canvas[: min(3024, big.shape[0]), : min(4032, big.shape[1])] = big[:3024, :4032]
    faces = recognizer(canvas)
    assert len(faces) == 1 and faces[0].box[2] > 1200


def test_a_photos_faces_come_left_to_right_whatever_size_found_them(recognizer):
    # The search's order put the large face on the right first and the small one on the left last;
    # face 0 must be the leftmost, as in analyze.py's table and annotate(numbered=True).
    frame = next(clips.demo_frames(1))
    x, y, w, h = recognizer.detect(frame)[0][0]
    face = frame[max(0, y - h // 4) : y + h + h // 4, max(0, x - w // 4) : x + w + w // 4]
    image = np.full((720, 1280, 3), 90, np.uint8)
    for left, side in ((40, 90), (300, 150), (700, 420)):
        image[150 : 150 + side, left : left + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    faces = recognizer(image)
    assert len(faces) == 3, [f.box for f in faces]
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)
    assert faces[0].box[2] < 80 and faces[2].box[2] > 200


def test_boxes_of_faces_at_the_edge_stay_inside_the_image(recognizer):
    frame = next(clips.demo_frames(1))
    x, y, w, h = recognizer.detect(frame)[0][0]
    for cut in (frame[y + h // 8 :, x + w // 8 :], frame[: y + h - h // 8, : x + w - w // 8]):
        faces = recognizer(cut)
        assert len(faces) == 1
        fx, fy, fw, fh = faces[0].box
        assert min(fx, fy) >= 0 and fx + fw <= cut.shape[1] and fy + fh <= cut.shape[0], faces[0].box
        assert min(fw, fh) > w // 2
        assert cut[fy : fy + fh, fx : fx + fw].shape[:2] == (fh, fw)  # the obvious crop is the box


@pytest.mark.parametrize("side", [640, 800, 1200, 1400, 2000])
def test_a_face_that_fills_the_image_is_found_once_at_any_size(recognizer, side):
    # 640-900 pixels fell between the search's scales (no face found); from about 1200 pixels
    # the full-size pass also found the eyes and nose as a second, smaller face inside the first.
    frame = next(clips.demo_frames(1))
    x, y, w, h = recognizer.detect(frame)[0][0]
    face = frame[max(0, y - h // 6) : y + h + h // 6, max(0, x - w // 6) : x + w + w // 6]
    image = np.full((side * 13 // 10, side, 3), 90, np.uint8)
    grown = cv2.resize(face, (side * 9 // 10, side * 9 // 10), interpolation=cv2.INTER_CUBIC)
    image[side // 10 : side // 10 + grown.shape[0], side // 20 : side // 20 + grown.shape[1]] = grown
    faces = recognizer(image)
    assert len(faces) == 1 and faces[0].box[2] > side // 2, [f.box for f in faces]
    grey = cv2.resize(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), (side, side), interpolation=cv2.INTER_CUBIC)
    assert len(recognizer(grey)) == 1  # a face crop blown up to fill the whole image


def test_labels_fit_small_images_and_grow_with_large_photos():
    from ferkit.draw import draw

    names = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    proba = np.array([0.05, 0.0, 0.05, 0.1, 0.6, 0.1, 0.1])
    grey = np.array([200, 200, 200])  # neutral's colour

    def label_size(side: int, box) -> tuple[int, int]:
        canvas = draw(np.zeros((side, side, 3), np.uint8), [box], [proba], names, None, False, ids=[0])
        above = np.all(canvas[: box[1]] == grey, axis=2)  # the label's filled box sits above the face
        return int(above.any(axis=0).sum()), int(above.any(axis=1).sum())

    # A face at the right edge of a small image: the whole label is drawn, moved left to fit.
    width, _ = label_size(150, (125, 60, 25, 25))
    assert width >= 0.5 * 150
    # On a 3000-pixel photo the label is drawn larger than on a webcam frame.
    _, webcam = label_size(640, (300, 200, 100, 100))
    _, photo = label_size(3000, (1500, 900, 400, 400))
    assert photo >= 2.5 * webcam


def test_probability_panels_cover_no_other_face_label_or_panel():
    from ferkit.draw import draw, panel_place

    names = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    proba = np.array([0.05, 0.0, 0.05, 0.1, 0.6, 0.1, 0.1])
    # Alone, with room on the right: the panel goes there (as it always did).
    assert panel_place((480, 640), (100, 100, 120, 120), (150, 104)) == (226, 100)
    # Two faces side by side, the gap between them too narrow for a panel: the left face's panel
    # may not go right (onto the other face), nor the right face's left; each goes outside.
    boxes = [(150, 150, 120, 120), (300, 150, 120, 120)]
    left_panel = panel_place((480, 640), boxes[0], (150, 104), avoid=[(300, 150, 420, 270)])
    right_panel = panel_place((480, 640), boxes[1], (150, 104), avoid=[(150, 150, 270, 270)])
    assert left_panel[0] + 150 <= 150 and right_panel[0] >= 420, (left_panel, right_panel)

    # Drawn: every face's pixels inside its box stay as they were (no panel darkens them), and both
    # labels (drawn after the panels) are whole.
    frame = np.full((480, 640, 3), 255, np.uint8)
    canvas = draw(frame, boxes, [proba, proba], names, None, True)
    for x, y, w, h in boxes:
        inner = canvas[y + 4 : y + h - 4, x + 4 : x + w - 4]
        assert (inner == 255).all(), "a panel covers a face"
    grey = np.array([200, 200, 200])  # neutral's colour: the labels' filled boxes
    for x, y, _w, _h in boxes:
        above = np.all(canvas[y - 40 : y - 2, x : x + 60] == grey, axis=2)
        assert above.mean() > 0.3, "a label is covered"
    # Two panels were drawn (the darkened area is two panels' worth) and they do not overlap.
    dark = np.all(canvas < 120, axis=2)
    assert dark.sum() > 2 * 0.5 * 150 * 104


def test_saved_video_is_h264_without_the_fps_counter_and_with_face_ids(tmp_path):
    av = pytest.importorskip("av")
    out = tmp_path / "demo.mp4"
    realtime.main(["--source", "demo", "--no-display", "--max-frames", "12", "--quiet", "--output", str(out)])
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    assert len(frames) == 12
    # No FPS counter in the file: the top-left corner, where the screen shows it, has no green text.
    corner = frames[5][:30, :120].astype(int)
    assert not np.any((corner[..., 1] > 200) & (corner[..., 0] < 60) & (corner[..., 2] < 60))
    burnt = tmp_path / "burnt.mp4"
    realtime.main(
        ["--source", "demo", "--no-display", "--max-frames", "12", "--quiet", "--output", str(burnt), "--burn-fps"]
    )
    with av.open(str(burnt)) as container:
        frame = list(container.decode(video=0))[5].to_ndarray(format="bgr24")[:30, :120].astype(int)
    assert np.any((frame[..., 1] > 200) & (frame[..., 0] < 80) & (frame[..., 2] < 80))


def test_without_pyav_the_opencv_writer_still_writes_the_video(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    out = tmp_path / "demo.mp4"
    realtime.main(["--source", "demo", "--no-display", "--max-frames", "5", "--quiet", "--output", str(out)])
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5

    monkeypatch.setitem(sys.modules, "av", None)  # not installed, as importlib.util.find_spec sees it
    with pytest.raises(SystemExit) as refused:  # VP9 needs PyAV: said before the model loads
        realtime.main(["--source", "demo", "--no-display", "--output", str(tmp_path / "demo.webm")])
    assert refused.value.code == 2 and "is written with PyAV, which is not installed" in capsys.readouterr().err


HELP = """
import sys, importlib
name = sys.argv[1]
module = importlib.import_module(name)
try:
    module.parse_args(["--help"])
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "jax", "torch"))
print("heavy:", heavy)
"""


@pytest.mark.parametrize("script", ["train_cnn", "evaluate", "ensemble", "realtime", "ga_select", "analyze", "export"])
def test_help_loads_no_deep_learning_framework(script):
    # --help answers in well under a second when nothing imports TensorFlow before the arguments are read.
    out = subprocess.run([sys.executable, "-c", HELP, script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert "usage:" in out.stdout and "heavy: []" in out.stdout
    assert "oneDNN" not in out.stderr and "absl" not in out.stderr
    # An option whose help names its default in words is not given a second, absolute one.
    text = " ".join(out.stdout.split())
    assert not re.search(r"\(default [^)]*\) \(default:", text), text
    assert str(ROOT) not in text  # default paths as the user types them (models/fer_cnn.onnx), not this machine's


MISSING = """
import sys, importlib
module = importlib.import_module(sys.argv[1])
try:
    module.main(sys.argv[2:])
except SystemExit as exc:
    print("exit:", exc.code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "jax", "torch"))
print("heavy:", heavy)
"""


@pytest.mark.parametrize(
    "script, argv, says",
    [
        ("train_cnn", ["--data", "no/such/fer2013", "--models-dir", "{tmp}"], "dataset path no/such/fer2013 does not"),
        ("train_cnn", ["--init-from", "no.keras", "--models-dir", "{tmp}"], "model file no.keras not found"),
        ("evaluate", ["--data", "no/such/fer2013"], "dataset path no/such/fer2013 does not"),
        ("evaluate", ["--model", "no.keras"], "model file no.keras not found"),
        ("ensemble", ["{tmp}/a.keras", "{tmp}/b.keras"], "a.keras not found"),
        ("ga_select", ["--data", "no.csv", "--models-dir", "{tmp}", "--plots-dir", "{tmp}"], "no.csv does not"),
    ],
)
def test_a_missing_dataset_or_model_is_said_before_loading_any_framework(script, argv, says, tmp_path):
    # It took 6-14 s (Keras and TensorFlow loaded first) to say the path was wrong.
    argv = [a.format(tmp=tmp_path) for a in argv]
    out = subprocess.run(
        [sys.executable, "-c", MISSING, script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "exit: 2" in out.stdout and "heavy: []" in out.stdout, out.stdout + out.stderr[-1500:]
    assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
