"""Dataset loading in every layout, its errors, the cache, and the shared preprocessing."""

from __future__ import annotations

import shutil
import time
import warnings

import cv2
import numpy as np
import pytest
from conftest import FER2013, counts, synthetic_face, write_csv, write_images

import evaluate
from ferkit import imagecache
from ferkit.data import Dataset, Split, load_dataset
from ferkit.errors import DatasetError
from ferkit.faces import CLASS_NAMES, prepare_face, to_model_input
from ferkit.layouts import CSV_CODE_TO_NAME
from ferkit.paths import DEFAULT_MODEL_PATH, KERAS_MODEL_PATH
from ferkit.splits import stratified_subset


def class_counts(split: Split) -> list[int]:
    return np.bincount(split.y, minlength=len(CLASS_NAMES)).tolist()


def test_kaggle_layout_uses_name_prefixes_for_splits(kaggle_dir, cache_dir):
    data = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    assert data.layout == "folders"
    assert class_counts(data.train) == [12] * 7
    assert class_counts(data.val) == [3] * 7  # PublicTest_ (jpg)
    assert class_counts(data.test) == [4] * 7  # PrivateTest_ (png)
    assert data.train.x.shape[1:] == (48, 48) and data.train.x.dtype == np.uint8


def test_labels_follow_folder_names(kaggle_dir, cache_dir):
    data = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    for label in range(7):  # synthetic faces carry their label as a bright bar's row
        image = data.test.x[data.test.y == label][0]
        assert abs(int(image.mean(axis=1).argmax()) - (label + 0.5) * 48 / 7) < 4


def test_test_folder_without_prefixes_holds_out_validation_from_train(tmp_path, cache_dir):
    write_images(tmp_path / "d" / "train", counts(10))
    write_images(tmp_path / "d" / "test", counts(2), seed=9)
    data = load_dataset(tmp_path / "d", val_fraction=0.2, cache_dir=cache_dir, progress=False)
    assert min(class_counts(data.val)) >= 1 and min(class_counts(data.train)) >= 1
    assert (np.array(class_counts(data.val)) + class_counts(data.train)).tolist() == [10] * 7
    assert class_counts(data.test) == [2] * 7
    assert "training images" in data.val_note


def test_train_validation_layout(tmp_path, cache_dir):
    write_images(tmp_path / "d" / "train", counts(10))
    write_images(tmp_path / "d" / "validation", counts(3), seed=7)
    data = load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)
    assert class_counts(data.test) == [3] * 7  # validation/ is the held-out set here
    assert min(class_counts(data.val)) >= 1 and len(data.val) + len(data.train) == 70


def test_plain_class_folders_are_split_stratified(tmp_path, cache_dir):
    write_images(tmp_path / "d", counts(20))
    data = load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)
    assert data.layout == "class_folders"
    for split in (data.train, data.val, data.test):
        assert min(class_counts(split)) >= 1
    assert len(data.train) + len(data.val) + len(data.test) == 140


def face_set(split: Split) -> set[bytes]:
    return {face.tobytes() for face in np.asarray(split.x)}


def test_images_added_later_never_move_the_earlier_ones_to_another_split(tmp_path, cache_dir):
    # A split drawn anew when images were added put about 10% of the earlier test faces into
    # training: a model trained after was then compared, on "the test split", with faces it saw.
    write_images(tmp_path / "d", counts(60), seed=1)
    before = load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)
    write_images(tmp_path / "d", counts(40), seed=2)
    after = load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)
    assert len(after.train) + len(after.val) + len(after.test) == 700
    for split in ("train", "val", "test"):
        assert face_set(getattr(before, split)) <= face_set(getattr(after, split)), split
    # About 10% held out for testing and 10% of the rest for validation, every class in each.
    assert 0.06 < len(after.test) / 700 < 0.14 and 0.06 < len(after.val) / (700 - len(after.test)) < 0.14
    for split in (after.train, after.val, after.test):
        assert min(class_counts(split)) >= 1


def test_identical_faces_share_a_split_in_every_layout(tmp_path, cache_dir):
    # A face copied twice (FER2013 has hundreds) must not sit in training and in test at once; and
    # the same faces as class folders or as a CSV without its Usage column are split alike.
    write_images(tmp_path / "d", counts(30), ext=".png")
    for name in CLASS_NAMES:
        for image in sorted((tmp_path / "d" / name).iterdir())[:10]:
            (image.parent / f"copy_{image.name}").write_bytes(image.read_bytes())
    folders = load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)
    parts = {split: face_set(getattr(folders, split)) for split in ("train", "val", "test")}
    assert not parts["train"] & parts["test"] and not parts["train"] & parts["val"] and not parts["val"] & parts["test"]
    assert sum(len(p) for p in parts.values()) == 210  # 280 files, 210 distinct faces
    rows = [
        (CSV_CODE_TO_NAME.index(CLASS_NAMES[y]), " ".join(map(str, face.ravel())))
        for split in (folders.train, folders.val, folders.test)
        for face, y in zip(split.x, split.y)
    ]
    csv_path = write_csv(tmp_path / "f.csv", rows, header=("emotion", "pixels"))
    as_csv = load_dataset(csv_path, cache_dir=cache_dir, progress=False)
    assert face_set(as_csv.test) == parts["test"]


def test_a_small_class_keeps_a_face_in_each_split_with_every_copy_of_it():
    from ferkit.splits import held_out

    # One class of five faces, each twice; none falls under the fraction, so the lowest is held
    # out, both its copies (one copy in training would carry the test face there).
    keys = np.array([0.5, 0.3, 0.9, 0.7, 0.6] * 2)
    rest, held = held_out(np.arange(10), np.zeros(10, int), keys, 0.1)
    assert held.tolist() == [1, 6] and len(rest) == 8
    rest, held = held_out(np.arange(10), np.zeros(10, int), keys, 0.95)  # all under: the highest stays
    assert rest.tolist() == [2, 7]
    # Two distinct faces: one each side; one face (in copies) is never held out.
    assert [len(part) for part in held_out(np.arange(2), np.zeros(2, int), np.array([0.4, 0.8]), 0.1)] == [1, 1]
    assert [len(part) for part in held_out(np.arange(3), np.zeros(3, int), np.full(3, 0.05), 0.1)] == [3, 0]


def test_images_in_folders_inside_a_class_folder_count_for_that_class(tmp_path, cache_dir):
    write_images(tmp_path / "d", counts(10))
    write_images(tmp_path / "d" / "happy", {"happy": 5}, folder_names={"happy": "session2"}, seed=8)
    (tmp_path / "d" / "happy" / ".thumbs").mkdir()  # hidden folders stay out
    cv2.imwrite(str(tmp_path / "d" / "happy" / ".thumbs" / "t.png"), np.zeros((48, 48), np.uint8))
    cv2.imwrite(str(tmp_path / "d" / "happy" / "._p.png"), np.zeros((48, 48), np.uint8))  # macOS's leftovers
    write_images(tmp_path / "more", {"happy": 4}, seed=10)  # a linked folder is read, once
    (tmp_path / "d" / "happy" / "linked").symlink_to(tmp_path / "more" / "happy")
    (tmp_path / "d" / "happy" / "session2" / "up").symlink_to(tmp_path / "d" / "happy")  # no loop
    data = load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)
    totals = np.sum([class_counts(s) for s in (data.train, data.val, data.test)], axis=0)
    assert totals.tolist() == [10, 10, 10, 19, 10, 10, 10]
    (tmp_path / "d" / "happy" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DatasetError, match="gone.png is a link that leads nowhere"):
        load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)


def test_two_folders_for_one_class_are_refused_by_name(tmp_path, cache_dir):
    write_images(tmp_path / "d", counts(3))
    write_images(tmp_path / "d", {"happy": 3}, folder_names={"happy": "Happiness"}, seed=9)
    with pytest.raises(DatasetError, match=r"2 folders for the class happy \(Happiness, happy\); move"):
        load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)


def test_class_aliases_map_to_one_order(tmp_path, cache_dir):
    aliases = {"angry": "Anger", "happy": "happiness", "sad": "Sadness", "surprise": "surprised"}
    write_images(tmp_path / "d" / "train", counts(4), folder_names=aliases)
    write_images(tmp_path / "d" / "test", counts(2), folder_names=aliases, seed=3)
    data = load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)
    assert class_counts(data.test) == [2] * 7
    assert data.class_names == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def test_csv_label_codes_are_not_alphabetical(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    rows = []
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for code in range(7):
            pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
            rows.append((code, pixels, usage))
    data = load_dataset(write_csv(tmp_path / "fer2013.csv", rows), cache_dir=cache_dir, progress=False)
    names = [CLASS_NAMES[i] for i in data.test.y]
    # csv codes 0..6 are Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral
    assert names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert len(data.train) == len(data.val) == 7


def test_a_csv_usage_the_loader_does_not_know_is_refused_not_trained_on(tmp_path, cache_dir):
    rng = np.random.default_rng(1)
    pixels = lambda: " ".join(map(str, rng.integers(0, 256, 48 * 48)))  # noqa: E731
    # Spellings of the three splits are read as such (folder names too)...
    rows = [(code, pixels(), usage) for usage in ("training", "Public Test", "private_test") for code in range(7)]
    rows += [(code, pixels(), usage) for usage in ("train", "val", "TEST") for code in range(7)]
    data = load_dataset(write_csv(tmp_path / "spelled.csv", rows), cache_dir=cache_dir, progress=False)
    assert len(data.train) == len(data.val) == len(data.test) == 14 and not data.test_drawn
    # ...a typo is one error naming its line, not a test face quietly sent to training.
    rows[9] = (rows[9][0], rows[9][1], "PrivTest")
    with pytest.raises(DatasetError, match=r"line 11: Usage 'PrivTest' is not a split; use Training, PublicTest"):
        load_dataset(write_csv(tmp_path / "typo.csv", rows), cache_dir=cache_dir, progress=False)


def test_a_csv_without_usage_says_its_test_split_was_drawn_at_random(tmp_path, cache_dir, capsys):
    # Such a CSV may hold the faces a model trained on; evaluate.py printed "test split" and 0.81
    # for FER2013 training rows, with nothing to say the split was made up.
    rng = np.random.default_rng(0)
    rows = [(code, " ".join(map(str, rng.integers(0, 256, 48 * 48)))) for code in range(7) for _ in range(10)]
    csv_path = write_csv(tmp_path / "mine.csv", rows, header=("emotion", "pixels"))
    data = load_dataset(csv_path, cache_dir=cache_dir, progress=False)
    assert "held out at random" in data.test_note and min(class_counts(data.test)) >= 1
    with_usage = write_csv(
        tmp_path / "f.csv", [(*row, "Training" if i % 3 else "PrivateTest") for i, row in enumerate(rows)]
    )
    assert load_dataset(with_usage, cache_dir=cache_dir, progress=False).test_note == Dataset.test_note
    if DEFAULT_MODEL_PATH.exists():
        evaluate.main(["--model", str(DEFAULT_MODEL_PATH), "--data", str(csv_path), "--cache-dir", str(cache_dir)])
        printed = capsys.readouterr().out
        assert "note: test: about 10% of the images, held out at random" in printed
        # The shipped model records its training on FER2013's own splits: said, not "no record".
        said = "fer_cnn.onnx may have trained on some of these faces if it was trained on this data (fer2013)"
        assert said in printed and "its data named its own held-out splits" in printed
        evaluate.main(
            [
                "--model",
                str(DEFAULT_MODEL_PATH),
                "--data",
                str(csv_path),
                "--cache-dir",
                str(cache_dir),
                "--split",
                "val",
            ]
        )
        printed = capsys.readouterr().out
        assert "note: validation: about 10% of the training images" in printed
        assert said in printed and "records no training data" not in printed


def test_evaluate_scores_a_test_folder_alone_split_by_split_or_all_of_it(kaggle_dir, cache_dir, capsys, tmp_path):
    # A test folder on its own (PublicTest_ and PrivateTest_ faces, no training ones) is no
    # dataset to split, but it is labelled faces a model can be scored on: its named splits, or all.
    test_only = kaggle_dir / "test"
    with pytest.raises(
        DatasetError, match=r"no training images: its files are named PublicTest_\* or Pri.*--split test, val or all"
    ):
        load_dataset(test_only, cache_dir=cache_dir, progress=False)  # the error says why, and what works
    common = ["--model", str(DEFAULT_MODEL_PATH), "--data", str(test_only), "--cache-dir", str(cache_dir)]
    report = evaluate.main([*common, "--split", "all"])
    assert report["faces"] == 7 * (3 + 4) and sum(map(sum, report["confusion_matrix"])) == 49
    printed = capsys.readouterr().out
    assert f"on {test_only}: all 49 faces, every split" in printed and "training faces" not in printed
    evaluate.main([*common[:3], str(kaggle_dir), *common[4:], "--split", "all"])  # with its train/ folder
    assert "note: 84 of these 133 faces are training faces of this data" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        evaluate.main([*common, "--split", "all", "--calibrate", str(cache_dir / "c.keras")])
    assert refused.value.code == 2 and "--calibrate fits its temperature" in capsys.readouterr().err
    # Each named split alone scores as it does beside the train/ folder (which only the draw of
    # other data would need): refused before ("no training images").
    full = ["--model", str(DEFAULT_MODEL_PATH), "--data", str(kaggle_dir), "--cache-dir", str(cache_dir)]
    for split, faces in (("test", 7 * 4), ("val", 7 * 3)):
        alone = evaluate.main([*common, "--split", split])
        assert (
            alone["faces"] == faces
            and alone["confusion_matrix"] == evaluate.main([*full, "--split", split])["confusion_matrix"]
        )
    # A folder of PrivateTest_ faces only: the validation split it lacks is named, with what works.
    private = tmp_path / "private"
    for path in test_only.rglob("PrivateTest_*"):
        (private / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, private / path.parent.name / path.name)
    capsys.readouterr()
    for model, extra in (
        (DEFAULT_MODEL_PATH, ["--split", "val"]),
        (KERAS_MODEL_PATH, ["--calibrate", str(tmp_path / "c.keras")]),
    ):
        with pytest.raises(SystemExit) as refused:
            evaluate.main(["--model", str(model), "--data", str(private), "--cache-dir", str(cache_dir), *extra])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and "has no validation faces" in err and "PublicTest_" in err, err
    assert evaluate.main(["--model", str(DEFAULT_MODEL_PATH), "--data", str(private), "--cache-dir",
                          str(cache_dir)])["faces"] == 7 * 4  # fmt: skip
    # Classes too small to draw validation faces from: said, not scored on no faces.
    write_images(tmp_path / "tiny", counts(2), seed=3)
    assert len(load_dataset(tmp_path / "tiny", cache_dir=cache_dir, progress=False).val) == 0
    with pytest.raises(SystemExit) as refused:
        evaluate.main(["--model", str(DEFAULT_MODEL_PATH), "--data", str(tmp_path / "tiny"), "--cache-dir",
                       str(cache_dir), "--split", "val"])  # fmt: skip
    assert "the validation split drawn from" in capsys.readouterr().err and refused.value.code == 2


def test_csv_pixels_keep_their_values(tmp_path, cache_dir):
    pixels = np.arange(48 * 48) % 256
    rows = [(3, " ".join(map(str, pixels)), u) for u in ("Training", "PublicTest", "PrivateTest")]
    data = load_dataset(write_csv(tmp_path / "f.csv", rows), cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(data.test.x[0].ravel(), pixels)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no class folders"),
        (
            lambda p: write_csv(p / "bad.csv", [(0, "1 2 3")], header=("label", "image")),
            "expected the fer2013.csv columns",
        ),
        (lambda p: write_csv(p / "short.csv", [(0, "1 2 3", "Training")]), "3 pixels, expected 2304"),
        (lambda p: write_csv(p / "code.csv", [(9, " ".join(["1"] * 2304), "Training")]), "not in 0-6"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path, cache_dir, make, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(make(tmp_path), cache_dir=cache_dir, progress=False)


def test_a_fer2013_train_folder_alone_is_refused_before_any_image_is_decoded(tmp_path, cache_dir, monkeypatch):
    write_images(tmp_path / "train", counts(3), prefix="Training")  # FER2013's train/ given as --data

    def decode(*args, **kwargs):
        raise AssertionError("decoded 28,709 images before saying the data cannot be used")

    monkeypatch.setattr(imagecache, "decode_files", decode)
    with pytest.raises(DatasetError, match="no test images.*cannot be split"):
        load_dataset(tmp_path / "train", cache_dir=cache_dir, progress=False)


def test_empty_class_folder_is_named(tmp_path, cache_dir):
    write_images(tmp_path / "d" / "train", counts(3))
    (tmp_path / "d" / "train" / "fear").joinpath("x.jpg").unlink(missing_ok=True)
    for f in (tmp_path / "d" / "train" / "fear").iterdir():
        f.unlink()
    write_images(tmp_path / "d" / "test", counts(1))
    with pytest.raises(DatasetError, match=r"train/fear has no images"):
        load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)


def test_unknown_class_folder_is_named(tmp_path, cache_dir):
    write_images(tmp_path / "d", {**counts(3)})
    (tmp_path / "d" / "contempt").mkdir()
    with pytest.raises(DatasetError, match="unknown class folder 'contempt'"):
        load_dataset(tmp_path / "d", cache_dir=cache_dir, progress=False)


def test_unreadable_images_are_skipped_with_a_count(kaggle_dir, cache_dir):
    (kaggle_dir / "train" / "happy" / "Training_broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        data = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    assert len(data.train) == 84


def test_a_script_says_which_images_it_skipped_in_one_warning_line(kaggle_dir, cache_dir, capsys):
    (kaggle_dir / "train" / "happy" / "Training_broken.jpg").write_bytes(b"not a jpeg")
    evaluate.main(["--model", str(DEFAULT_MODEL_PATH), "--data", str(kaggle_dir), "--cache-dir", str(cache_dir)])
    err = capsys.readouterr().err
    assert "warning: skipped 1 unreadable image(s), e.g. " in err and "Training_broken.jpg" in err
    # no file, line and source line of ours
    assert "UserWarning" not in err and "layouts.py" not in err and "data.py" not in err


def test_second_load_reads_the_cache_and_a_change_invalidates_it(kaggle_dir, cache_dir, monkeypatch):
    first = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    assert len(list(cache_dir.glob("fer-*.npz"))) == 1

    def no_decoding(*_):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(imagecache, "decode_files", no_decoding)
    second = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(first.train.x, second.train.x)
    monkeypatch.undo()

    write_images(kaggle_dir / "train", {"sad": 1}, prefix="Training", seed=42)
    third = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    assert len(third.train) == len(first.train) + 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_changed_dataset_s_new_cache_replaces_its_old_one_and_leaves_other_files(
    kaggle_dir, tmp_path, cache_dir, stream
):
    other = tmp_path / "other"
    write_images(other, {"happy": 3, "sad": 3}, seed=7)
    load_dataset(other, cache_dir=cache_dir, progress=False, stream=stream)
    load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False, stream=stream)
    cache_dir.joinpath("notes.txt").write_text("mine")
    cache_dir.joinpath("fer-0123abcd-0123456789abcdef0123.npz.damaged").write_bytes(b"kept to look at")
    # named as caches were before the name led with the source: never read again, so removed too
    old = ["fer-0123456789abcdef0123.npz", "fer-0123456789abcdef0123.faces.npy", "fer-0123456789abcdef0123.labels.npz"]
    before = {p.name for p in cache_dir.iterdir()}
    for name in old:
        cache_dir.joinpath(name).write_bytes(b"an old cache")

    write_images(kaggle_dir / "train", {"sad": 1}, prefix="Training", seed=42)  # the dataset edited
    load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False, stream=stream)
    after = {p.name for p in cache_dir.iterdir()}
    per_source = 2 if stream else 1  # faces + labels, or one .npz
    assert len(before - after) == per_source and len(after - before) == per_source
    assert not set(old) & after
    gone = before - after
    assert all(name.startswith("fer-") for name in gone)
    # the other dataset's cache, the user's file and the damaged file set aside all stay
    assert {"notes.txt", "fer-0123abcd-0123456789abcdef0123.npz.damaged"} <= after
    assert len([n for n in after if n.startswith("fer-") and not n.endswith(".damaged")]) == 2 * per_source
    again = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False, stream=stream)
    assert {p.name for p in cache_dir.iterdir()} == after and len(again.train) > 0


def test_damaged_cache_is_rebuilt(kaggle_dir, cache_dir):
    first = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    for cache_file in cache_dir.glob("fer-*.npz"):
        cache_file.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="damaged"):
        again = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(first.train.x, again.train.x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: read without a warning
        load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)


def test_prepare_face_accepts_any_size_grey_or_colour():
    rng = np.random.default_rng(0)
    for shape in [(48, 48), (200, 130), (30, 31, 3), (64, 64, 4), (48, 48, 1)]:
        face = prepare_face(rng.integers(0, 256, shape, dtype=np.uint8))
        assert face.shape == (48, 48) and face.dtype == np.uint8
    batch = to_model_input([rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)] * 3)
    assert batch.shape == (3, 48, 48, 1) and batch.dtype == np.float32


def test_preprocessing_is_the_same_for_training_and_live_crops(tmp_path, cache_dir):
    """A face the demo crops from a colour frame becomes exactly what the loader gives training."""
    face = cv2.resize(synthetic_face(2, np.random.default_rng(1)), (96, 96))
    colour = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
    folder = tmp_path / "d"
    for split in ("train", "test"):
        for name in CLASS_NAMES:
            (folder / split / name).mkdir(parents=True)
            cv2.imwrite(str(folder / split / name / "a.png"), colour)
            cv2.imwrite(str(folder / split / name / "b.png"), colour)
    data = load_dataset(folder, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(to_model_input(data.test.x[:1]), to_model_input([colour]))


def test_stratified_subset_keeps_proportions():
    y = np.repeat(np.arange(7), [500, 50, 500, 900, 600, 600, 400])
    idx = stratified_subset(y, 355, seed=0)
    assert len(idx) == 355
    assert np.bincount(y[idx]).tolist() == [50, 5, 50, 90, 60, 60, 40]


@pytest.mark.parametrize("n", [7, 100, 641, 1999, 2000, 3549])
def test_stratified_subset_returns_exactly_the_number_asked_for(n):
    y = np.repeat(np.arange(7), [500, 54, 512, 899, 613, 601, 371])
    idx = stratified_subset(y, n, seed=1)
    assert len(idx) == len(np.unique(idx)) == n
    assert np.bincount(y[idx], minlength=7).min() >= 1
    share = np.bincount(y[idx], minlength=7) / n - np.bincount(y) / len(y)
    assert np.abs(share).max() <= 1 / n + 1e-12  # off by at most one face per class


def test_npz_export_loads_as_the_same_dataset(kaggle_dir, cache_dir, tmp_path, capsys):
    from tools.export_npz import main as export

    argv = ["--data", str(kaggle_dir), "--out", str(tmp_path / "faces.npz"), "--cache-dir", str(cache_dir)]
    path = export(argv)
    written = path.stat().st_mtime_ns
    with pytest.raises(SystemExit) as refused:  # again: the first file is kept
        export(argv)
    assert refused.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert path.stat().st_mtime_ns == written and export([*argv, "--overwrite"]) == path
    folders = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    packed = load_dataset(path, cache_dir=None, progress=False)
    assert packed.layout == "npz"
    for name in ("train", "val", "test"):
        a, b = getattr(folders, name), getattr(packed, name)
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(y=np.zeros(3, int)), "lacks the array 'x'"),
        (dict(x=np.zeros((3, 48, 48), np.float32), y=np.zeros(3, int)), "expected uint8 \\(N, 48, 48\\)"),
        (dict(x=np.zeros((3, 48, 48), np.uint8), y=np.array([0, 1, 9])), "labels must be 0-6"),
        (dict(x=np.zeros((3, 48, 48), np.uint8), y=np.array(2)), "y \\(\\), group \\(\\); expected"),
        (dict(x=np.zeros((3, 48, 48), np.uint8), y=np.zeros(3, int), group=np.zeros((3, 1), int)), "group \\(3, 1\\)"),
        (dict(x=np.zeros((3, 48, 48), np.uint8), y=np.zeros(3, int), group=np.array(0)), "group \\(\\); expected"),
        (dict(x=np.zeros((1, 48, 48), np.uint8), y=np.zeros(1, int), class_names=np.array(["a"])), "has classes a"),
    ],
)
def test_a_foreign_npz_is_one_clear_error(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / "d.npz", cache_dir=None, progress=False)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "d.npz").read_bytes()[:50])
    with pytest.raises(DatasetError, match="cannot be read as an .npz"):
        load_dataset(tmp_path / "cut.npz", cache_dir=None, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not FER2013.exists(), reason="FER2013 not at ../shared/data/fer2013")
def test_full_fer2013_loads_with_official_splits_and_caches(tmp_path):
    started = time.perf_counter()
    data = load_dataset(FER2013, cache_dir=tmp_path, progress=False)
    first = time.perf_counter() - started
    assert (len(data.train), len(data.val), len(data.test)) == (28709, 3589, 3589)
    assert class_counts(data.test) == [491, 55, 528, 879, 626, 594, 416]
    started = time.perf_counter()
    load_dataset(FER2013, cache_dir=tmp_path, progress=False)
    print(f"FER2013 first load {first:.1f} s, cached load {time.perf_counter() - started:.1f} s")


@pytest.mark.parametrize(
    "suffix, options", [(".jpg", {"quality": 100}), (".png", {}), (".webp", {"lossless": True}), (".tiff", {})]
)
def test_training_reads_a_photo_stored_on_its_side_upright_as_the_photo_path_does(tmp_path, cache_dir, suffix, options):
    # Whether imread applied a PNG's or WebP's orientation tag depended on OpenCV's version, so the
    # same folder trained on upright faces on one machine and on sideways ones on another.
    from PIL import Image

    from ferkit.faces import read_image

    rng = np.random.default_rng(3)
    folder = tmp_path / "d"
    for name in CLASS_NAMES:
        (folder / "train" / name).mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(folder / "train" / name / f"z{i}.png"), synthetic_face(CLASS_NAMES.index(name), rng))
    face = np.zeros((60, 40), np.uint8)
    face[:20], face[:, :10] = 255, 120  # no turn or mirror of it equals another
    for orientation, name in zip(range(1, 9), CLASS_NAMES * 2):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / "train" / name / f"a{orientation}{suffix}"
        Image.fromarray(face).save(path, exif=exif.tobytes(), **options)
    data = load_dataset(folder / "train", cache_dir=cache_dir, progress=False)
    everything = np.concatenate([data.train.x, data.val.x, data.test.x])
    for orientation, name in zip(range(1, 9), CLASS_NAMES * 2):
        expected = prepare_face(read_image(folder / "train" / name / f"a{orientation}{suffix}"))
        assert any(np.array_equal(expected, x) for x in everything), orientation
