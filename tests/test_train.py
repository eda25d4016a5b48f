"""The CNN's structure, a short training run end to end, resuming, and learning on real data."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import FER2013, TINY, counts, write_images

import ensemble
import evaluate
import train_cnn
from ferkit import modelfile, networks, precision, training
from ferkit.classify import predict_proba
from ferkit.data import load_dataset
from ferkit.errors import ModelFileError
from ferkit.faces import CLASS_NAMES
from ferkit.modelfile import load_model
from ferkit.provenance import average_record, held_out_note
from ferkit.splits import SPLIT_RULE


def run(data, tmp_path, *extra):
    args = [
        "--data",
        str(data),
        "--models-dir",
        str(tmp_path / "models"),
        "--plots-dir",
        str(tmp_path / "plots"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--batch-size",
        "32",
        "--name",
        "t",
        *extra,
    ]
    return train_cnn.main(args)


def test_seed_architecture_matches_the_recipe():
    model = networks.build_model()
    assert model.count_params() == 4_743_431
    assert model.output_shape == (None, 7)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(64, (3, 3)), (128, (5, 5)), (512, (3, 3)), (512, (3, 3))]
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [256, 512, 512, 7]
    kinds = [type(layer).__name__ for layer in model.layers]
    block = ["Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "Dropout"]
    start = kinds.index("Conv2D")
    assert kinds[start : start + 20] == block * 4
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == [0.25] * 6 + [0.22]
    proba = model(np.zeros((2, 48, 48, 1), np.float32))
    np.testing.assert_allclose(np.sum(proba, axis=1), 1, rtol=1e-5)


def test_augmentation_only_changes_training_forward_pass():
    model = networks.build_model(augment=True, arch="vgg")
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(model(x, training=False), model(x, training=False), rtol=1e-6)
    assert any(layer.name.startswith("aug_") for layer in model.layers)


@pytest.mark.cost(56)
def test_short_training_writes_outputs_and_reloads_identically(training_dir, tmp_path, capsys):
    metrics = run(training_dir, tmp_path, "--epochs", "2", "--augment", "--class-weights")
    models, plots = tmp_path / "models", tmp_path / "plots"
    for name in ("t_loss.png", "t_accuracy.png", "t_confusion.png"):
        assert (plots / name).stat().st_size > 10_000
    saved = json.loads((models / "t_metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert set(saved["per_class"]) == set(CLASS_NAMES)
    assert len(saved["history"]["val_loss"]) == 2
    assert "test accuracy" in capsys.readouterr().out

    model, names = load_model(models / "t.keras")
    assert names == CLASS_NAMES
    assert not any(layer.name.startswith("aug_") for layer in model.layers)
    data = load_dataset(training_dir, cache_dir=tmp_path / "cache", progress=False)
    proba = predict_proba(model, data.test.x)
    again, _ = load_model(models / "t.keras")
    np.testing.assert_allclose(predict_proba(again, data.test.x), proba, rtol=1e-5, atol=1e-6)
    assert np.mean(proba.argmax(1) == data.test.y) == pytest.approx(saved["test_accuracy"])
    report = evaluate.main(
        [
            "--model",
            str(models / "t.keras"),
            "--data",
            str(training_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--confusion",
            str(plots / "eval.png"),
        ]
    )
    assert report["accuracy"] == pytest.approx(saved["test_accuracy"])
    assert (plots / "eval.png").exists()


def interrupt_after_epoch(monkeypatch, stop_epoch: int) -> None:
    """Make training raise KeyboardInterrupt right after epoch `stop_epoch` is checkpointed."""
    original = training.EpochCheckpoint.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == stop_epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.EpochCheckpoint, "on_epoch_end", on_epoch_end)


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_interrupted_training_resumes_where_it_stopped(training_dir, tmp_path, monkeypatch, capsys, schedule):
    if schedule == "plateau":  # a stop inside the first epoch: nothing saved, and said so

        def on_epoch_begin(self, epoch, logs=None):
            raise KeyboardInterrupt

        monkeypatch.setattr(training.EpochCheckpoint, "on_epoch_begin", on_epoch_begin)
        with pytest.raises(SystemExit) as stopped:
            run(training_dir, tmp_path, "--epochs", "3", *TINY, "--schedule", schedule)
        assert "interrupted before the first epoch ended, so nothing was saved" in capsys.readouterr().err
        monkeypatch.undo()
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(SystemExit) as stopped:
        run(training_dir, tmp_path, "--epochs", "3", *TINY, "--schedule", schedule)
    assert stopped.value.code == 130
    assert "interrupted; epoch 2, the last finished, is saved in" in capsys.readouterr().err
    checkpoints = tmp_path / "models" / "checkpoints" / "t"
    state = json.loads((checkpoints / "state.json").read_text())
    assert state["epoch"] == 2
    monkeypatch.undo()

    metrics = run(training_dir, tmp_path, "--epochs", "3", *TINY, "--schedule", schedule)
    assert "resuming" in capsys.readouterr().out
    assert metrics["epochs_trained"] == 3
    assert metrics["history"]["loss"][:2] == state["history"]["loss"]
    if schedule == "cosine":  # the schedule goes on from the saved step, it does not restart
        lrs = metrics["history"]["lr"]
        assert 1e-3 > lrs[0] > lrs[1] > lrs[2] >= 0
    assert not checkpoints.exists()  # a finished run leaves no checkpoint behind


def test_a_warm_up_before_the_plateau_schedule_climbs_once_across_a_resume(training_dir, tmp_path, monkeypatch):
    flags = ("--epochs", "5", *TINY, "--optimizer", "sgd", "--lr", "0.01", "--warmup-epochs", "4")
    flags += ("--schedule", "plateau", "--lr-patience", "10")  # no plateau decay inside 5 epochs
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, *flags)
    monkeypatch.undo()

    metrics = run(training_dir, tmp_path, *flags)
    # The rate at each epoch's end: a quarter of --lr per warm-up epoch, the resumed run going on
    # from the saved step, then --lr itself for the plateau schedule to decay from.
    assert metrics["history"]["lr"] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01], rel=1e-5)


@pytest.mark.cost(48)
def test_weight_average_of_the_last_epochs_survives_a_resume(training_dir, tmp_path, monkeypatch, capsys):
    kernels = {}  # the first conv's kernel after each epoch, as the run saw it
    original = training.EpochCheckpoint.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        kernels[epoch + 1] = self.model.get_layer("conv1_1").kernel.numpy().copy()
        original(self, epoch, logs)
        if epoch == 1 and stop:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.EpochCheckpoint, "on_epoch_end", on_epoch_end)
    stop = True
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, "--epochs", "4", *TINY, "--swa-epochs", "3")
    checkpoints = tmp_path / "models" / "checkpoints" / "t"
    state = json.loads((checkpoints / "state.json").read_text())
    assert state["swa"] == {"first_epoch": 2, "count": 1, "file": "swa0002.npz"}
    assert [p.name for p in checkpoints.glob("swa*.npz")] == ["swa0002.npz"]

    stop = False
    metrics = run(training_dir, tmp_path, "--epochs", "4", *TINY, "--swa-epochs", "3")
    assert metrics["swa"]["epochs"] == [2, 4] and 0 <= metrics["swa"]["validation_accuracy"] <= 1
    assert "saved average: " in capsys.readouterr().out
    averaged, _ = load_model(tmp_path / "models" / "t_swa.keras")
    expected = np.mean([kernels[2], kernels[3], kernels[4]], axis=0)
    np.testing.assert_allclose(averaged.get_layer("conv1_1").kernel.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert not checkpoints.exists()  # the average's files go with the finished run's checkpoint


@pytest.mark.cost(44)
def test_a_time_limit_writes_the_outputs_and_the_same_command_trains_on(training_dir, tmp_path, monkeypatch, capsys):
    """--max-minutes: the run stops after the last epoch that fits, writes its model as at the end
    and keeps its checkpoints; the same command (any time limit) trains on to --epochs."""
    clock = iter(range(0, 10_000, 100))  # training's clock: each reading 100 s after the last
    monkeypatch.setattr(training, "time", SimpleNamespace(time=lambda: next(clock)))
    metrics = run(training_dir, tmp_path, "--epochs", "4", *TINY, "--max-minutes", "5")
    monkeypatch.undo()
    assert metrics["stopped_after_epoch"] == metrics["epochs_trained"] < 4
    assert "time limit: stopped after epoch" in capsys.readouterr().out
    models = tmp_path / "models"
    assert (models / "t.keras").exists() and json.loads((models / "t_metrics.json").read_text())["stopped_after_epoch"]
    checkpoints = models / "checkpoints" / "t"
    assert json.loads((checkpoints / "state.json").read_text())["epoch"] == metrics["epochs_trained"]

    again = run(training_dir, tmp_path, "--epochs", "4", *TINY)
    assert "resuming" in capsys.readouterr().out
    assert again["epochs_trained"] == 4 and "stopped_after_epoch" not in again
    assert again["history"]["loss"][: metrics["epochs_trained"]] == metrics["history"]["loss"]
    assert not checkpoints.exists()


def test_a_run_in_progress_and_a_finished_one_plot_side_by_side(training_dir, tmp_path, monkeypatch, capsys):
    from tools.plot_runs import main as plot_runs

    clock = iter(range(0, 10_000, 100))  # training's clock: each reading 100 s after the last
    monkeypatch.setattr(training, "time", SimpleNamespace(time=lambda: next(clock)))
    stopped = run(training_dir, tmp_path, "--epochs", "4", *TINY, "--max-minutes", "5")
    monkeypatch.undo()
    done = stopped["epochs_trained"]
    assert done < 4
    capsys.readouterr()
    models = tmp_path / "models"
    out = plot_runs(
        [
            str(models / "checkpoints" / "t"),
            str(models / "t_metrics.json"),
            "--line",
            "0.5",
            "chance+",
            "--out",
            str(tmp_path / "curves.png"),
        ]
    )
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out.splitlines()
    best = max(stopped["history"]["val_accuracy"])
    assert printed[0].startswith(f"t: epoch {done} of 4 (checkpoint)") and f"best {best:.4f}" in printed[0]
    assert printed[1].startswith(f"t: epoch {done} of 4 (stopped at its time limit)")
    # Drawn again (the run goes on): the earlier plot is replaced only when asked.
    with pytest.raises(SystemExit) as refused:
        plot_runs([str(models / "t_metrics.json"), "--out", str(out)])
    assert refused.value.code != 0 and "curves.png exists" in capsys.readouterr().err
    plot_runs([str(models / "t_metrics.json"), "--out", str(out), "--overwrite"])

    drawn = {}
    monkeypatch.setattr("ferkit.report.plot_runs", lambda runs, *a, **k: drawn.update(runs) or tmp_path / "y.png")
    plot_runs([str(models / "t_metrics.json")] * 2 + ["--out", str(tmp_path / "y.png")])
    assert len(drawn) == 2  # two runs of one name are both drawn
    monkeypatch.undo()

    with pytest.raises(SystemExit) as refused:
        plot_runs([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert refused.value.code != 0 and "Traceback" not in err and "does not exist: give a checkpoint folder" in err
    with pytest.raises(SystemExit) as refused:
        plot_runs([str(models / "t_metrics.json"), "--line", "high", "shipped", "--out", str(tmp_path / "x.png")])
    assert refused.value.code == 2 and "is not an accuracy" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        plot_runs([str(models / "t_metrics.json"), "--line", "68", "shipped", "--out", str(tmp_path / "x.png")])
    assert refused.value.code == 2 and "between 0 and 1" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as refused:
        plot_runs([str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")])
    assert "holds no checkpoint: its run has finished" in capsys.readouterr().err


def test_an_npz_without_its_test_faces_trains_and_leaves_the_test_to_evaluate(training_dir, tmp_path, capsys):
    """The GPU carry: train and validation faces only, as WebP (tools/export_npz.py --splits train
    val --quality 90): a few grey levels from the originals; train_cnn.py trains on it and reports
    no test figure; every other script refuses it with the reason."""
    from tools.export_npz import main as export

    packed = export(
        ["--data", str(training_dir), "--out", str(tmp_path / "tv.npz"), "--cache-dir", str(tmp_path / "cache")]
        + ["--splits", "train", "val", "--quality", "90"]
    )
    full = load_dataset(training_dir, cache_dir=tmp_path / "cache", progress=False)
    light = load_dataset(packed, cache_dir=None, progress=False, need_test=False)
    assert len(light.test) == 0 and "no test split" in light.val_note
    for name in ("train", "val"):
        a, b = getattr(full, name), getattr(light, name)
        assert np.array_equal(a.y, b.y)
        assert np.sqrt(np.mean((a.x.astype(float) - b.x) ** 2)) < 6  # lossy, close (FER2013: 2.1)
    metrics = run(packed, tmp_path, "--epochs", "1", *TINY)
    assert metrics["test_accuracy"] is None and 0 <= metrics["validation_accuracy"] <= 1
    assert (tmp_path / "models" / "t.keras").exists()
    assert "no test split" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(tmp_path / "models" / "t.keras"), "--data", str(packed)])
    assert "serves train_cnn.py only" in capsys.readouterr().err


def test_a_narrower_wide_network_trains_and_ships_at_its_width(training_dir, tmp_path, capsys):
    # A --limit above the data's size is said, not ignored in silence (the user may have meant another folder).
    metrics = run(training_dir, tmp_path, "--epochs", "1", "--arch", "wide", "--width", "8", "--limit", "100000")
    model, _ = load_model(tmp_path / "models" / "t.keras")
    assert model.name == "fer_wide8" and model.get_layer("conv4_2").filters == 64
    assert f"note: --limit 100000 is not below the {metrics['data']['train']} training faces" in capsys.readouterr().out


def test_resume_with_other_settings_is_refused(training_dir, tmp_path, monkeypatch, capsys):
    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, "--epochs", "2", *TINY)
    monkeypatch.undo()
    with pytest.raises(SystemExit) as refused:
        run(training_dir, tmp_path, "--epochs", "2", *TINY, "--lr", "0.01")
    assert refused.value.code == 2
    assert "different settings (--lr 0.001 then, --lr 0.01 now)" in capsys.readouterr().err


@pytest.mark.cost(42)
def test_warm_restart_starts_from_the_given_model(training_dir, tmp_path, capsys):
    run(training_dir, tmp_path, "--epochs", "1", *TINY, "--name", "first")
    first, _ = load_model(tmp_path / "models" / "first.keras")
    restarted = networks.build_model(arch="wide", width=8, augment=True)
    modelfile.copy_weights(first, restarted)
    faces = np.random.default_rng(1).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(predict_proba(restarted, faces), predict_proba(first, faces), rtol=1e-5, atol=1e-6)

    init = ["--init-from", str(tmp_path / "models" / "first.keras")]
    metrics = run(training_dir, tmp_path, "--epochs", "1", *TINY, "--name", "second", *init)
    assert metrics["settings"]["init_from"].endswith("first.keras")
    # Another architecture: refused before any work (the data decoded, Keras loaded), naming the
    # flags that build the start model's network, to give instead.
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        train_cnn.parse_args(
            ["--data", str(training_dir), "--models-dir", str(tmp_path / "models"), "--name", "third", *init]
        )
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "is the network of --arch wide --width 8, but this run builds 'fer_seed'" in err
    # The library says the same where a run is set up in code.
    with pytest.raises(ModelFileError, match=r"is the network of --arch wide --width 8, but this run builds 'fer_vgg'"):
        training.warm_start(networks.build_model(arch="vgg"), tmp_path / "models" / "first.keras")


def test_an_onnx_export_is_refused_as_a_start_model_naming_the_keras_file(training_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_cnn.parse_args(["--data", str(training_dir), "--init-from", str(tmp_path / "m.onnx")])
    assert stopped.value.code == 2 and "is an ONNX export, which holds no trainable" in capsys.readouterr().err


def test_bad_data_path_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_cnn.main(["--data", str(tmp_path / "nope"), "--models-dir", str(tmp_path)])
    assert stopped.value.code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.cost(470)
@pytest.mark.slow
@pytest.mark.skipif(not FER2013.exists(), reason="FER2013 not at ../shared/data/fer2013")
def test_learns_real_expressions(tmp_path):
    """A short run (375 steps) on 4,000 real faces must clearly beat the majority class.
    Measured alone (session 25, 50 training faces/s): 4 epochs 621 s, test 0.419; the third epoch's
    validation 0.388; 2,000 faces x 3 epochs 0.325, too near the bar; the wide network at width 8
    or 16 under 0.28 after 4 epochs. Majority 0.245, so the bar is 0.295."""
    metrics = run(FER2013, tmp_path, "--limit", "4000", "--epochs", "3", "--arch", "vgg")
    counts = [row["support"] for row in metrics["per_class"].values()]
    majority = max(counts) / sum(counts)
    print(f"test accuracy {metrics['test_accuracy']:.3f} vs majority rate {majority:.3f}")
    assert metrics["test_accuracy"] > majority + 0.05


def test_crop_tta_sees_whole_faces_in_any_chunking():
    model = networks.build_model(arch="vgg")
    flat = np.full((4, 48, 48), 97, np.uint8)  # a crop of a flat face, scaled back, is the same face
    np.testing.assert_allclose(
        predict_proba(model, flat, flip_tta=True, crops=True), predict_proba(model, flat), rtol=1e-5, atol=1e-6
    )
    faces = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    whole = predict_proba(model, faces, flip_tta=True, crops=True)
    np.testing.assert_allclose(predict_proba(model, faces, flip_tta=True, crops=True, chunk=3), whole, rtol=1e-5)
    assert not np.allclose(whole, predict_proba(model, faces, flip_tta=True))  # the crops do count
    np.testing.assert_allclose(whole.sum(1), 1, rtol=1e-5)


def test_a_preset_sets_the_recipe_and_given_flags_override_it():
    fast = train_cnn.parse_args(["--preset", "fast", "--name", "p"])
    for key, value in training.PRESETS["fast"].items():
        assert getattr(fast, key) == value, key
    mine = train_cnn.parse_args(["--preset", "fast", "--name", "p", "--epochs", "5", "--augment", "none"])
    assert (mine.epochs, mine.augment, mine.batch_size) == (5, False, 128)
    plain = train_cnn.parse_args(["--name", "p", "--augment"])
    assert (plain.augment, plain.optimizer, plain.mixed_precision) == ("light", "adam", False)


def test_bf16_is_chosen_only_where_the_cpu_computes_it_natively(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "accelerator", lambda: None)
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    sapphire = tmp_path / "amx"
    sapphire.write_text("processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert precision.cpu_flags(avx2) >= {"avx2", "fma"} and "avx512_bf16" not in precision.cpu_flags(avx2)
    assert precision.cpu_flags(tmp_path / "none") is None
    assert precision.choose_precision("auto", avx2) == (False, precision.choose_precision("auto", avx2)[1])
    assert "float32" in precision.choose_precision("auto", avx2)[1]
    assert precision.choose_precision("auto", sapphire)[0] is True
    assert precision.choose_precision("auto", tmp_path / "none")[0] is False  # unknown: the safe choice
    forced, line = precision.choose_precision(True, avx2)
    assert forced is True and "--no-mixed-precision trains faster here" in line  # asked for: kept, with a word
    assert precision.choose_precision(False, sapphire)[0] is False
    # JAX's CPU backend trains slower in bf16 even where the CPU has it (0.88x float32, measured).
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    on_jax = precision.choose_precision("auto", sapphire)
    assert on_jax[0] is False and "JAX's CPU backend" in on_jax[1] and "float32" in on_jax[1]
    monkeypatch.setattr(precision, "accelerator", lambda: "GPU")
    assert precision.choose_precision("auto", avx2)[0] is True
    assert precision.choose_precision("auto", sapphire)[0] is True  # JAX on a GPU: bf16


@pytest.mark.cost(89)
@pytest.mark.parametrize("native", [False, True])
def test_a_preset_trains_in_bf16_only_where_it_is_native(training_dir, tmp_path, monkeypatch, capsys, native):
    # The presets asked for bf16 everywhere; on an AVX2-only CPU that made the wide network's
    # training step 12x slower (4.5 against 57 images/s). "auto" decides, and the run says so.
    monkeypatch.setattr(precision, "native_bf16", lambda cpuinfo=None: (native, "as the test says"))
    policies, set_policy = [], keras.mixed_precision.set_global_policy
    monkeypatch.setattr(keras.mixed_precision, "set_global_policy", lambda p: policies.append(str(p)) or set_policy(p))
    try:
        # The preset, with the smallest network: emulated bf16 on this CPU is what makes it slow.
        metrics = run(training_dir, tmp_path, "--preset", "fast", "--epochs", "1", *TINY)
    finally:
        set_policy("float32")
    assert metrics["settings"]["mixed_precision"] is native
    assert ("mixed_bfloat16" in policies) is native  # the model trained in bf16 (the saved copy is float32)
    assert ("precision: mixed bfloat16" if native else "precision: float32") in capsys.readouterr().out


def test_mixup_blends_faces_and_labels_the_same_way_on_every_pass():
    x = np.stack([np.full((48, 48), v, np.uint8) for v in (0, 200)] * 8)
    y = np.eye(7, dtype=np.float32)[[0, 3] * 8]
    batches = training.EpochBatches(x, y, 16, seed=0, mixup=0.4)
    faces, labels = batches[0]
    again = batches[0]
    np.testing.assert_array_equal(faces, again[0])
    lam = labels[:, [0, 3]].max(1)
    assert (lam >= 0.5).all() and (lam < 1).any()
    # The label weight of class 3 is the share of the bright face in the pixels.
    np.testing.assert_allclose(faces[:, 0, 0, 0] / 200, labels[:, 3], rtol=1e-5, atol=1e-5)


def test_repeats_put_each_face_in_its_batch_several_times_and_each_copy_is_augmented_on_its_own():
    from ferkit.batchaug import BatchAugmenter

    rows = np.random.default_rng(2).integers(0, 256, (40, 48, 48)).astype(np.uint8)
    y = np.eye(7, dtype=np.float32)[np.arange(40) % 7]
    weights = np.linspace(0.5, 2, 40).astype(np.float32)
    once = training.EpochBatches(rows, y, 16, seed=5, sample_weight=weights)
    thrice = training.EpochBatches(rows, y, 16, seed=5, sample_weight=weights, repeats=3)
    assert len(thrice) == len(once)  # the same steps an epoch
    for index in range(len(once)):
        (x1, y1, w1), (x3, y3, w3) = once[index], thrice[index]
        assert len(x3) == 3 * len(x1)
        for got, want in ((x3, x1), (y3, y1), (w3, w1)):  # each face next to its copies, with its label and weight
            np.testing.assert_array_equal(got, np.repeat(want, 3, axis=0))
    # Augmented before the step: each copy draws its own shift, rotation, erasing...
    augmented = training.EpochBatches(rows, y, 16, seed=5, repeats=3, transform=BatchAugmenter("strong", 0))[0][0]
    copies = augmented.reshape(16, 3, 48, 48, 1)
    assert np.abs(copies[:, 0] - copies[:, 1]).mean(axis=(1, 2, 3)).min() > 1
    # ... and so do the augmentation layers inside a network, in training.
    model = networks.build_model(augment="strong", arch="wide", width=8)
    crops = keras.Model(model.input, model.get_layer("centre_crop").output)
    seen = keras.ops.convert_to_numpy(
        crops(np.repeat(rows[:8, :, :, None], 2, axis=0).astype("float32"), training=True)
    )
    seen = seen.reshape(8, 2, 40, 40, 1)
    assert np.abs(seen[:, 0] - seen[:, 1]).mean(axis=(1, 2, 3)).min() > 0.01


def test_repeats_train_and_are_refused_without_augmentation_or_on_another_runs_checkpoint(
    training_dir, tmp_path, monkeypatch, capsys
):
    with pytest.raises(SystemExit) as refused:
        run(training_dir, tmp_path, "--epochs", "1", *TINY, "--repeats", "2")
    assert refused.value.code == 2
    assert "--repeats above 1 needs --augment" in capsys.readouterr().err
    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, "--epochs", "2", *TINY, "--augment", "light", "--repeats", "2")
    monkeypatch.undo()
    assert "each face 2 times a step" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # the checkpoint's steps saw each face twice
        run(training_dir, tmp_path, "--epochs", "2", *TINY, "--augment", "light")
    assert refused.value.code == 2 and "repeats" in capsys.readouterr().err
    metrics = run(training_dir, tmp_path, "--epochs", "2", *TINY, "--augment", "light", "--repeats", "2")
    assert "resuming from" in capsys.readouterr().out
    assert metrics["epochs_trained"] == 2 and metrics["settings"]["repeats"] == 2


def test_the_plateau_schedule_can_watch_validation_accuracy_and_a_resume_keeps_that_choice(
    training_dir, tmp_path, monkeypatch, capsys
):
    flags = ("--epochs", "4", *TINY, "--optimizer", "sgd", "--lr", "0.01", "--schedule", "plateau")
    flags += ("--plateau-on", "accuracy", "--lr-patience", "1", "--lr-factor", "0.5")
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, *flags)
    monkeypatch.undo()
    state = json.loads((tmp_path / "models" / "checkpoints" / "t" / "state.json").read_text())
    accuracy, lrs = state["history"]["val_accuracy"], state["history"]["lr"]
    # The schedule's best is the highest validation accuracy, not the lowest loss (~1.9 here).
    assert state["plateau"]["best"] == pytest.approx(max(accuracy))
    # Patience 1: the rate halves after every epoch whose accuracy is not a new best (by 1e-4).
    best, rate, expected = -np.inf, 0.01, []
    for value in accuracy:
        if value - 1e-4 > best:
            best = value
        else:
            rate /= 2
        expected.append(rate)
    assert lrs == pytest.approx(expected, rel=1e-5)

    # The saved counters hold a best accuracy: a resume that would watch the loss is refused.
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, *flags[:-6], "--plateau-on", "loss", *flags[-4:])
    assert "different settings (--plateau-on accuracy then, --plateau-on loss now)" in capsys.readouterr().err
    metrics = run(training_dir, tmp_path, *flags)
    assert len(metrics["history"]["val_accuracy"]) == 4


def test_a_seed_does_not_move_the_held_out_faces_of_a_folder_of_class_folders(tmp_path, monkeypatch):
    # The data names no splits, so they are drawn; evaluate.py draws them without knowing the
    # training seed, and must find the same test faces, not faces the model trained on.
    write_images(tmp_path / "faces", counts(12), seed=11)
    seen = {}
    original = training.load_dataset
    monkeypatch.setattr(training, "load_dataset", lambda *a, **k: seen.setdefault("data", original(*a, **k)))
    run(tmp_path / "faces", tmp_path, "--epochs", "1", *TINY, "--seed", "7")
    evaluated = load_dataset(tmp_path / "faces", cache_dir=tmp_path / "cache", progress=False)
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(seen["data"], split).x, getattr(evaluated, split).x)


def test_a_class_without_training_faces_is_named_before_training(tmp_path, capsys):
    faces = {name: n for name, n in counts(12).items() if name != "fear"}
    write_images(tmp_path / "faces", faces, seed=12)
    metrics = run(tmp_path / "faces", tmp_path, "--epochs", "1", *TINY)
    printed = capsys.readouterr()
    assert "warning: no training faces of fear" in printed.err and "no test faces of fear" in printed.err
    # The macro F1 averages over the classes in the labels or the predictions, and says which.
    seen = metrics["test_macro_f1_classes"]
    assert set(CLASS_NAMES) - {"fear"} <= set(seen)
    assert (f"(over the {len(seen)} classes seen: {', '.join(seen)})" in printed.out) == (len(seen) < 7)


def test_a_checkpoint_whose_splits_the_seed_drew_is_not_resumed_onto_other_faces(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "faces", counts(12), seed=13)
    flags = ("--epochs", "2", *TINY, "--seed", "7")
    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(SystemExit):
        run(tmp_path / "faces", tmp_path, *flags)
    monkeypatch.undo()
    state_file = tmp_path / "models" / "checkpoints" / "t" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["settings"]["split_rule"] == SPLIT_RULE
    del state["settings"]["split_rule"]  # as an older version saved it, when --seed 7 drew the splits
    state_file.write_text(json.dumps(state))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run(tmp_path / "faces", tmp_path, *flags)
    assert "held out other faces (drawn with --seed 7" in capsys.readouterr().err
    state["settings"]["split_seed"] = 0  # as session 20 saved it, when a seeded draw made them
    state_file.write_text(json.dumps(state))
    with pytest.raises(SystemExit):
        run(tmp_path / "faces", tmp_path, *flags)
    assert "held out other faces (drawn at random, as an older version did)" in capsys.readouterr().err


@pytest.mark.cost(46)
def test_a_model_records_the_rule_that_drew_its_held_out_faces_and_evaluate_says_what_it_means(
    tmp_path, monkeypatch, capsys
):
    # A folder of class folders names no splits: evaluate.py draws the same test faces, and can say
    # so only when the model (checkpoints included) records how its training drew them.
    write_images(tmp_path / "faces", counts(12), seed=14)
    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(SystemExit):
        run(tmp_path / "faces", tmp_path, "--epochs", "2", *TINY)
    monkeypatch.undo()
    checkpoint_record = modelfile.read_training(tmp_path / "models" / "checkpoints" / "t" / "best.keras")
    run(tmp_path / "faces", tmp_path, "--epochs", "2", *TINY)
    model_path = tmp_path / "models" / "t.keras"
    record = modelfile.read_training(model_path)
    assert record == checkpoint_record and record["split_rule"] == SPLIT_RULE
    assert record["drawn"] == ["validation", "test"] and record["fractions"] == {"validation": 0.1, "test": 0.1}
    assert record["data"] == "faces" and record["layout"] == "class_folders"
    assert sum(record["faces"].values()) == 7 * 12 == sum(counts(12).values())
    flags = ["--data", str(tmp_path / "faces"), "--cache-dir", str(tmp_path / "cache")]

    def note(path, *extra):
        capsys.readouterr()
        evaluate.main(["--model", str(path), *flags, *extra])
        return capsys.readouterr().out

    assert "drawn by the same rule" in note(model_path)
    # Calibrating keeps the record.
    calibrated = tmp_path / "calibrated.keras"
    evaluate.main(["--model", str(model_path), *flags, "--calibrate", str(calibrated)])
    assert modelfile.read_training(calibrated) == record

    # What a record may say instead: each gets its reason, not the reassurance.
    model, names = load_model(model_path)
    others = {
        "records no training data": None,
        "by another rule (seeded, not face-hash-1)": {**record, "split_rule": "seeded"},
        "the data had 85 faces then and 84 now": {
            **record,
            "faces": {**record["faces"], "train": record["faces"]["train"] + 1},
        },
        "started from a model (--init-from) (trained on fer2013)": {
            **record,
            "init_from": {"data": "fer2013", "split_rule": None},
        },
        "a teacher (--teacher)": {**record, "teachers": [record, None]},
        # ensemble.py's average of a model and one continued from a model trained elsewhere
        "a member started from a model (--init-from) (trained on fer2013)": average_record(
            [record, {**record, "init_from": {"data": "fer2013", "split_rule": None}}]
        )[0],
    }
    # A start model or teacher gone before a resume, or a file that is no model, records nothing.
    (tmp_path / "not_a_model.keras").write_text("text")
    assert modelfile.read_training(tmp_path / "gone.keras") is None
    assert modelfile.read_training(tmp_path / "not_a_model.keras") is None
    for i, (said, other) in enumerate(others.items()):
        modelfile.save_model(model, tmp_path / f"other{i}.keras", names, training=other)
        printed = note(tmp_path / f"other{i}.keras", "--split", "val")
        assert said in printed and "same rule" not in printed, printed
    # A run that held out 20% for validation (--val-fraction 0.2) is scored on its own 20%; drawn at
    # another fraction, the faces would not be the ones it held out, and the note would say so.
    fifth = {**record, "fractions": {"validation": 0.2, "test": 0.1}}
    modelfile.save_model(model, tmp_path / "fifth.keras", names, training=fifth)
    printed = note(tmp_path / "fifth.keras", "--split", "val")
    tenth = note(model_path, "--split", "val")
    assert "drawn by the same rule" in printed and "about 20% of the training images" in printed
    assert "about 10% of the training images" in tenth
    faces = [int(re.search(r"validation split \((\d+) faces\)", out)[1]) for out in (printed, tenth)]
    assert faces[0] > faces[1]
    capsys.readouterr()
    modelfile.save_model(model, tmp_path / "fifth_b.keras", names, training=fifth)
    ensemble.main([str(tmp_path / "fifth.keras"), str(tmp_path / "fifth_b.keras"), *flags])  # the same faces
    assert f"validation accuracy ({faces[0]} faces, validation: about 20% of" in capsys.readouterr().out
    assert "held out 20% for validation, not the 10% drawn now" in held_out_note(
        fifth, "m", "validation", {"validation": 0.1, "test": 0.1}, sum(record["faces"].values())
    )
    # An average of a model and its continuation (--init-from of it) held out the same faces.
    continued, differ = average_record([record, {**record, "init_from": record, "trained_on": 30}])
    assert differ == ["the faces trained on (--limit)", "the model each started from (--init-from)"]
    assert continued["members"][0] == record
    modelfile.save_model(model, tmp_path / "continued.keras", names, training=continued)
    assert "drawn by the same rule" in note(tmp_path / "continued.keras", "--split", "val")


def test_batches_augmented_before_the_step_draw_the_same_faces_for_the_same_seed_epoch_and_batch():
    from ferkit.batchaug import BatchAugmenter

    x = np.random.default_rng(0).integers(0, 256, (16, 48, 48, 1)).astype(np.float32)
    augment = BatchAugmenter("strong", 3)
    faces = augment(x, 0, 1)
    assert faces.shape == x.shape and faces.dtype == np.float32 and faces.min() >= 0 and faces.max() <= 255
    np.testing.assert_array_equal(faces, augment(x, 0, 1))
    np.testing.assert_array_equal(faces, BatchAugmenter("strong", 3)(x, 0, 1))  # a resumed run's
    assert np.abs(faces - x).mean() > 5  # shifted, rotated, zoomed, erased...
    for other in (augment(x, 0, 2), augment(x, 1, 1), augment(x, 0, 1, part=1), BatchAugmenter("strong", 4)(x, 0, 1)):
        assert np.abs(other - faces).mean() > 5  # another batch, epoch, host's share or seed: other draws
    # In the batches, after the faces of (seed, epoch, batch) are drawn.
    y = np.eye(7, dtype=np.float32)[np.arange(40) % 7]
    rows = np.random.default_rng(1).integers(0, 256, (40, 48, 48)).astype(np.uint8)
    batches = training.EpochBatches(rows, y, 16, seed=3, transform=augment)
    plain = training.EpochBatches(rows, y, 16, seed=3)
    np.testing.assert_array_equal(batches[1][0], augment(plain[1][0], 0, 1))


def test_augmenting_the_batches_trains_a_network_without_augmentation_layers_and_a_resume_keeps_that_choice(
    training_dir, tmp_path, monkeypatch, capsys
):
    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, "--epochs", "2", *TINY, "--augment", "strong", "--augment-in", "batches")
    monkeypatch.undo()
    with pytest.raises(SystemExit) as refused:  # the checkpoint's network has no augmentation layers
        run(training_dir, tmp_path, "--epochs", "2", *TINY, "--augment", "strong")
    assert refused.value.code == 2
    assert "(--augment-in batches then, --augment-in model now)" in capsys.readouterr().err
    metrics = run(training_dir, tmp_path, "--epochs", "2", *TINY, "--augment", "strong", "--augment-in", "batches")
    assert "resuming from" in capsys.readouterr().out
    assert metrics["epochs_trained"] == 2 and metrics["settings"]["augment_in"] == "batches"
    model, _ = load_model(tmp_path / "models" / "t.keras")
    assert not [layer.name for layer in model.layers if layer.name.startswith("aug_")]
    assert model.name == "fer_wide8"
    with pytest.raises(SystemExit) as refused:
        run(training_dir, tmp_path, "--epochs", "1", *TINY, "--augment-in", "batches")
    assert refused.value.code == 2
    assert "--augment-in says where the augmentation runs, and this run has none" in capsys.readouterr().err
