#!/bin/bash
# The wide recipe on a lent GPU machine (JAX with CUDA, Python 3.12, no TensorFlow, no network),
# several seeds side by side in one command that ends inside the device tool's 10 minutes; each
# run's model (the best epoch or the weight average of its last quarter, whichever scores higher on
# validation) and all logs come back in $OUT. Choosing between the runs and the PrivateTest read
# happen on the CPU machine afterwards, on the original faces (README, "Scaling out", "One GPU").
#
# Here, once (what travels must stay under 64 MiB with the tracked files):
#   python tools/export_npz.py --data ../shared/data/fer2013 --out data/device/fer_trainval.npz \
#       --splits train val --quality 90                      # 27.5 MiB: no test faces travel
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       keras==3.15.1 namex==0.1.0 optree==0.20.0             # 2.8 MiB; keras' other needs are there
# Then, with the device tool:
#   run(command="bash tools/device_train.sh", carry=[".whl", "data/device"], timeout_s=600)
#
# Usage: tools/device_train.sh [MINUTES] [SEEDS...]   (default: 7 minutes of training; seeds 0 1 2)
# Every run also stops at its time limit (train_cnn.py --max-minutes), so the command always ends
# with models to bring back; a short probe first measures an epoch's time with all runs side by
# side and sizes --epochs to fit, so the cosine schedule ends at a low rate as it should.
# On this CPU, to prove it (tests/test_scaling.py does, in a process that cannot import TensorFlow):
#   OUT=/tmp/o DEVICE_DATA=small.npz DEVICE_FLAGS="--width 8 --batch-size 32" tools/device_train.sh 0.5 0 1

set -u -o pipefail
MINUTES=${1:-7}
shift || true
SEEDS=(${@:-0 1 2})
. tools/device_env.sh  # OUT, WORK, DATA, say; the data check, the carried wheels, JAX

# The recipe: --preset wide (VGG trunk 48-384 on random 40x40 crops, SGD Nesterov, cosine with a
# warm-up, strong augmentation with random erasing, label smoothing, bf16), a weight average over
# the last quarter of the epochs. Extra flags for every run: DEVICE_FLAGS.
train() {  # name seed epochs minutes [flags...]
  local name=$1 seed=$2 epochs=$3 minutes=$4
  shift 4
  $PY train_cnn.py --data "$DATA" --preset wide --name "$name" --seed "$seed" --epochs "$epochs" \
    --max-minutes "$minutes" --models-dir "$WORK/models" --plots-dir "$WORK/plots" \
    --checkpoint-dir "$WORK/ckpt/$name" --cache-dir "$WORK/cache" --fresh --overwrite ${DEVICE_FLAGS:-} "$@"
}

# Probe: two epochs of every run at once; the second one's time (no compiling in it) sizes the runs.
# Its weight average of epoch 2 tries the end of a run (BatchNorm re-measured) before the long runs.
say "probe: 2 epochs x ${#SEEDS[@]} runs side by side"
for seed in "${SEEDS[@]}"; do
  train "probe$seed" "$seed" 2 0 --swa-epochs 1 > "$WORK/probe$seed.log" 2>&1 &
done
wait
read -r epoch_seconds compile_seconds < <($PY - "$WORK" "${SEEDS[@]}" <<'EOF'
import json, sys
work, seeds = sys.argv[1], sys.argv[2:]
epoch, compile = [0.0], [0.0]
for seed in seeds:
    try:
        history = json.load(open(f"{work}/models/probe{seed}_metrics.json"))["history"]
    except OSError:
        continue
    ended = history["ended_at"]  # epoch 2 end to end: training, validation, checkpoint
    epoch.append(ended[1] - ended[0])
    compile.append(max(history["seconds"][0] - history["seconds"][1], 0))  # epoch 1 also compiles
print(max(epoch), max(compile))
EOF
)
cat "$WORK"/probe*.log >> "$OUT/probe.log"
if [ "$($PY -c "print(int($epoch_seconds > 0))")" != 1 ]; then
  say "error: the probe trained no epoch; its logs are in probe.log"
  exit 1
fi
left=$($PY -c "print(int(max($MINUTES * 60 - ($(date +%s) - $started), 30)))")  # seconds
# 8% to spare (epochs vary); the runs compile again before their first epoch.
epochs=$($PY -c "print(max(4, int(($left - $compile_seconds) * 0.92 / $epoch_seconds)))")
swa=$(( epochs / 4 ))
say "an epoch takes ${epoch_seconds} s side by side (compiling ${compile_seconds} s): ${epochs} epochs in the ${left} s left (weight average of the last $swa)"

# Runs are named by their width (--width in DEVICE_FLAGS, else the preset's 48): wide48_s0, ...
width=48
[[ " ${DEVICE_FLAGS:-} " =~ .*--width[=[:space:]]+([0-9]+) ]] && width=$((10#${BASH_REMATCH[1]}))
prefix=wide$width
for seed in "${SEEDS[@]}"; do
  train "${prefix}_s$seed" "$seed" "$epochs" "$($PY -c "print($left / 60)")" --swa-epochs "$swa" \
    > "$OUT/${prefix}_s$seed.log" 2>&1 &
done
wait
say "runs finished"

# Bring back, per run, the model that scores higher on validation (the best epoch or the average),
# and one archive of the metrics, curves and plots (the tool returns at most 8 files).
$PY - "$WORK" "$OUT" "$prefix" "${SEEDS[@]}" <<'EOF' | tee -a "$OUT/device.log"
import json, shutil, sys
work, out, prefix, seeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
for seed in seeds:
    name = f"{prefix}_s{seed}"
    try:
        metrics = json.load(open(f"{work}/models/{name}_metrics.json"))
    except OSError:
        print(f"{name}: no model (see {name}.log)")
        continue
    best, swa = metrics["validation_accuracy"], metrics.get("swa", {}).get("validation_accuracy", -1)
    chosen = f"{name}_swa" if swa > best else name
    shutil.copy(f"{work}/models/{chosen}.keras", f"{out}/{chosen}.keras")
    print(f"{name}: {metrics['epochs_trained']} epochs; validation (WebP faces) best epoch {best:.4f}, "
          f"weight average {swa:.4f}: brought back {chosen}.keras")
EOF
tar -czf "$OUT/runs.tar.gz" --exclude='*.keras' -C "$WORK" models plots
say "done"
