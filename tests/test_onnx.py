"""The light runtime: models exported to ONNX run with ONNX Runtime, give Keras' probabilities,
carry their class names and calibration, and the live path never imports TensorFlow or Keras."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import FER2013, ROOT, counts, write_images

import evaluate
from ferkit.errors import ModelFileError
from ferkit.modelfile import load_model, read_calibration
from ferkit.paths import DEFAULT_MODEL_PATH, INT8_MODEL_PATH, KERAS_MODEL_PATH

pytest.importorskip("onnxruntime")


def faces(n: int, seed: int = 0) -> np.ndarray:
    """Real faces when the dataset is beside the checkout, otherwise generated ones."""
    files = sorted(FER2013.glob("test/*/PrivateTest_*"))
    if files:
        picked = np.random.default_rng(seed).choice(len(files), n, replace=False)
        return np.stack([cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE) for i in picked])
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_export_keeps_probabilities_class_names_calibration_and_training_record(tmp_path):
    pytest.importorskip("tf2onnx")
    import keras

    from ferkit.calibration import fold_temperature
    from ferkit.export import export_onnx, quantize_int8
    from ferkit.modelfile import read_training, save_model
    from ferkit.networks import build_model

    keras.utils.set_random_seed(0)
    model = build_model(num_classes=3, arch="vgg")
    fold_temperature(model, 1.5)
    calibration = {"temperature": 1.5, "fitted_on": "generated faces"}
    record = {"data": "faces", "drawn": ["test"], "split_rule": "face-hash-1"}
    keras_path = save_model(model, tmp_path / "m.keras", ("calm", "glad", "sad"), calibration, record)
    onnx_path = export_onnx(keras_path, tmp_path / "m.onnx")
    x = faces(64)
    onnx_model, names = load_model(onnx_path)
    assert names == ("calm", "glad", "sad") and read_calibration(onnx_path) == calibration
    assert read_training(onnx_path) == record
    reference = np.asarray(model.predict(x[..., None].astype(np.float32), verbose=0))
    np.testing.assert_allclose(onnx_model.predict(x[..., None]), reference, atol=1e-5)

    int8 = quantize_int8(onnx_path, tmp_path / "m.int8.onnx", x, keras_path)
    int8_model, int8_names = load_model(int8)
    assert int8_names == names and read_calibration(int8) == calibration and read_training(int8) == record
    assert int8.stat().st_size < onnx_path.stat().st_size / 2
    assert np.abs(int8_model.predict(x[..., None]) - reference).max() < 0.2


def test_export_script_checks_both_files_on_the_test_split_and_refuses_to_replace_them(training_dir, tmp_path, capsys):
    pytest.importorskip("tf2onnx")
    import keras

    import export as export_script
    from ferkit.modelfile import save_model
    from ferkit.networks import build_model

    keras.utils.set_random_seed(0)
    keras_path = save_model(build_model(arch="wide", width=8), tmp_path / "m.keras")
    argv = [str(keras_path), "--int8", "--data", str(training_dir), "--cache-dir", str(tmp_path / "cache")]
    report = export_script.main([*argv, "--json", str(tmp_path / "check.json")])
    rows = report["rows"]
    assert list(rows) == ["keras", "float32", "int8"] and report["test_faces"] == 42
    assert rows["float32"]["max_probability_difference"] < 1e-4 and rows["float32"]["same_label"] == 1.0
    assert rows["int8"]["max_probability_difference"] < 0.2 and rows["int8"]["megabytes"] < rows["float32"]["megabytes"]
    assert json.loads((tmp_path / "check.json").read_text())["rows"] == rows
    out = capsys.readouterr().out
    assert "note: test:" not in out  # FER2013's layout names its test split
    assert "int8 ranges were measured on" in out and "fewer than the 1024" in out  # a tiny set: said
    assert ("warning: the int8 file gives another label" in out) == (rows["int8"]["same_label"] < 0.95)

    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "m.onnx", tmp_path / "m.int8.onnx")}
    with pytest.raises(SystemExit) as refused:  # the same command again: nothing replaced
        export_script.main(argv)
    assert refused.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in written} == written
    # Again over a folder of class folders, whose test split is drawn here: the check says so.
    folders = tmp_path / "class_folders"
    write_images(folders, counts(12), seed=7)
    export_script.main([*argv[:2], "--data", str(folders), *argv[4:], "--overwrite"])
    assert all(p.stat().st_mtime_ns != t for p, t in written.items())
    assert "note: test: about 10% of the images, held out at random by a hash" in capsys.readouterr().out


def test_a_checkpoint_of_the_wide_network_exports_for_one_face_and_for_a_batch(tmp_path):
    pytest.importorskip("tf2onnx")
    import keras

    from ferkit import export
    from ferkit.modelfile import save_model
    from ferkit.networks import build_model

    keras.utils.set_random_seed(0)
    # As a training checkpoint is: augmentation layers in front, the 40x40 centre crop, and
    # BatchNorm statistics far from a batch's own (so normalising by the batch would show).
    model = build_model(arch="wide", width=8, augment="strong")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.3, np.float32))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 4.0, np.float32))
    keras_path = save_model(model, tmp_path / "wide.keras")
    onnx_path = export.export_onnx(keras_path, tmp_path / "wide.onnx")
    onnx_model, _ = load_model(onnx_path)
    x = faces(16)[..., None].astype(np.float32)
    for batch in (x[:1], x):
        reference = np.asarray(model.predict_on_batch(batch))
        np.testing.assert_allclose(onnx_model.predict(batch), reference, atol=1e-5)

    other = build_model(arch="wide", width=8)
    with pytest.raises(ModelFileError, match="does not give Keras' probabilities"):
        export._check_export(other, onnx_path, keras_path)


@pytest.mark.skipif(not DEFAULT_MODEL_PATH.exists(), reason="no shipped ONNX model")
def test_shipped_exports_agree_with_the_shipped_keras_model():
    x = faces(300)[..., None].astype(np.float32)
    keras_model, keras_names = load_model(KERAS_MODEL_PATH)
    reference = np.asarray(keras_model.predict(x, verbose=0))
    assert read_calibration(DEFAULT_MODEL_PATH) == read_calibration(KERAS_MODEL_PATH)
    for path, tolerance, agreement in ((DEFAULT_MODEL_PATH, 1e-4, 1.0), (INT8_MODEL_PATH, 0.15, 0.95)):
        model, names = load_model(path)
        proba = model.predict(x)
        assert names == keras_names
        assert np.abs(proba - reference).max() < tolerance, path.name
        assert np.mean(proba.argmax(1) == reference.argmax(1)) >= agreement, path.name


LIGHT_RUN = """
import sys
from ferkit import Recognizer, clips
import realtime
faces = Recognizer(sys.argv[1])(next(clips.demo_frames(1)))
assert len(faces) == 1 and abs(sum(faces[0].probabilities.values()) - 1) < 1e-4
realtime.main(["--model", sys.argv[1], "--source", "demo", "--no-display", "--max-frames", "5", "--quiet",
               "--output", sys.argv[2]])
"""

LIGHT_EVALUATE = """
import sys
import evaluate
report = evaluate.main(["--model", sys.argv[1], "--data", sys.argv[2], "--cache-dir", sys.argv[3], "--tta"])
assert report["faces"] == 42 and len(report["confusion_matrix"]) == 7
"""


def heavy_imports(script: str, *args) -> str:
    """Run ``script`` in a fresh process; what it imported of all that requirements-live.txt leaves out."""
    left_out = str({"tensorflow", "keras", "jax", "torch", "sklearn", "matplotlib", "scipy", "PIL", "onnx", "deap",
                    "dask"})  # fmt: skip
    check = f"\nprint('heavy:', sorted({{m.split('.')[0] for m in sys.modules}} & {left_out}))\n"
    out = subprocess.run([sys.executable, "-c", script + check, *map(str, args)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.rsplit("heavy: ", 1)[-1].strip()


@pytest.mark.parametrize("model", [DEFAULT_MODEL_PATH, INT8_MODEL_PATH], ids=["float32", "int8"])
def test_the_live_path_on_onnx_imports_neither_tensorflow_nor_keras(model, tmp_path):
    if not model.exists():
        pytest.skip("no shipped ONNX model")
    assert heavy_imports(LIGHT_RUN, model, tmp_path / "o.mp4") == "[]"
    assert (tmp_path / "o.mp4").stat().st_size > 1000


def test_evaluate_on_onnx_needs_only_the_light_runtime(training_dir, tmp_path):
    """evaluate.py on an .onnx model imports nothing requirements-live.txt leaves out."""
    if not DEFAULT_MODEL_PATH.exists():
        pytest.skip("no shipped ONNX model")
    assert heavy_imports(LIGHT_EVALUATE, DEFAULT_MODEL_PATH, training_dir, tmp_path / "cache") == "[]"


def test_a_damaged_onnx_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="export.py"):
        load_model(bad)
    foreign = tmp_path / "meta.onnx"
    foreign.write_text(json.dumps({"a": 1}))
    with pytest.raises(ModelFileError):
        load_model(foreign)


def test_evaluate_refuses_to_calibrate_an_onnx_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        evaluate.main(["--model", str(DEFAULT_MODEL_PATH), "--calibrate", str(tmp_path / "c.keras")])
    assert refused.value.code == 2
    assert "export it again" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["evaluate", "export"])
def test_a_keras_model_without_keras_installed_is_one_line_naming_the_install(script, monkeypatch, tmp_path, capsys):
    module = __import__(script)

    class NoKeras:  # as on the light runtime: `import keras` finds nothing
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "keras":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoKeras(), *sys.meta_path])
    argv = {"evaluate": ["--model", str(KERAS_MODEL_PATH), "--data", str(tmp_path)],
            "export": [str(KERAS_MODEL_PATH), "--out", str(tmp_path / "m.onnx")]}[script]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        module.main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "pip install -r requirements.txt" in err and "Traceback" not in err


def test_a_model_whose_scores_are_not_probabilities_is_refused_by_name(tmp_path):
    # A model ending in logits was read as probabilities: an ECE of 285, and in an average it
    # swamped the other members.
    import keras

    from ferkit.modelfile import save_model

    face = keras.Input((48, 48, 1))
    logits = keras.layers.Dense(7)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(face)))
    path = save_model(keras.Model(face, logits), tmp_path / "logits.keras")
    with pytest.raises(ModelFileError, match="not probabilities.*without a softmax"):
        load_model(path)


def test_export_settings_that_do_nothing_or_name_the_wrong_file_are_refused(tmp_path, capsys):
    import ensemble
    import export

    keras_model = str(KERAS_MODEL_PATH)
    with pytest.raises(SystemExit) as refused:  # --json without --data wrote nothing and said nothing
        export.parse_args([keras_model, "--out", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "m.json")])
    assert (
        refused.value.code == 2
        and "--json saves the check against Keras, which needs --data" in capsys.readouterr().err
    )
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(SystemExit) as refused:  # the file in the way is --json's: say so
        export.parse_args([keras_model, "--out", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "m.json"),
                           "--data", str(tmp_path)])  # fmt: skip
    assert refused.value.code == 2 and "Give --out or --json another name" in capsys.readouterr().err
    with pytest.raises(
        SystemExit
    ) as refused:  # the float32 file named as an int8 one: --int8 wrote NAME.int8.int8.onnx
        export.parse_args([keras_model, "--out", str(tmp_path / "t.int8.onnx")])
    assert refused.value.code == 2 and "give --out t.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # a folder was "not a .keras model"
        export.parse_args([str(KERAS_MODEL_PATH.parent)])
    assert refused.value.code == 2 and "is a folder; give the .keras model file in it, e.g. export.py" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as refused:
        ensemble.parse_args([keras_model, keras_model])
    assert refused.value.code == 2 and "is given twice" in capsys.readouterr().err
