#!/bin/bash
# A head start for a long run on a lent GPU machine: trains one named train_cnn.py run there for
# the minutes the command has (JAX with CUDA, no TensorFlow) and brings back its checkpoint folder,
# so that the same command goes on with it here, on any backend, to the run's end. The long
# recipe (300 epochs, README "Which backend trains fastest") takes some 50 hours on this project's
# 2-core machines; the GPU's few minutes give it its first epochs.
#
# Here, once (what travels must stay under 64 MiB with the tracked files):
#   python tools/export_npz.py --data ../shared/data/fer2013 --out data/device/fer_trainval.npz \
#       --splits train val --quality 90                      # 27.5 MiB: no test faces travel
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       keras==3.15.1 namex==0.1.0 optree==0.20.0             # 2.8 MiB; keras' other needs are there
# Then, with the device tool (the run's flags after its name; --data, --name and the folders are set here):
#   run(command="bash tools/device_longrun.sh 9.3 fer_wide48k --preset wide --optimizer sgd ...",
#       carry=[".whl", "data/device"], timeout_s=600)
# and here, with what came back in FOLDER:
#   cat FOLDER/fer_wide48k.ckpt.tar.* | tar -x -C ~/.cache/fer-train/ckpt     # -> ckpt/fer_wide48k
#   python train_cnn.py --data data/device/fer_trainval.npz --name fer_wide48k \
#       --checkpoint-dir ~/.cache/fer-train/ckpt/fer_wide48k --preset wide --optimizer sgd ...
# The run trains on the same carried file in both places (lossy WebP faces, 2 grey levels RMS from
# the originals), because a checkpoint resumes only on the data it was made with; its test report
# is then evaluate.py's, on the original test faces.
#
# Usage: tools/device_longrun.sh MINUTES NAME [train_cnn.py flags...]
# MINUTES is the whole command's time, start-up and packing included: the training stops at the
# last epoch that fits (--max-minutes) and is stopped for certain a minute before the end, so the
# checkpoint (written after every epoch, atomically) always comes back.
# Where the step's cost is still unexplained (README, "A long run's head start"), set DEVICE_PROBE
# (below) to time its variants first.
# On this CPU, to prove it (tests/test_scaling.py does, in a process that cannot import TensorFlow):
#   OUT=/tmp/o DEVICE_DATA=small.npz tools/device_longrun.sh 1.5 tiny --preset wide --width 8 --epochs 300

set -u -o pipefail
if [ $# -lt 2 ]; then
  echo "usage: tools/device_longrun.sh MINUTES NAME [train_cnn.py flags...]" >&2
  exit 2
fi
MINUTES=$1
NAME=$2
shift 2
. tools/device_env.sh  # OUT, WORK, DATA, say; the data check, the carried wheels, JAX

# The command's end, less what packing needs; the training stops an epoch early by itself
# (--max-minutes, from its first epoch on), and for certain at the deadline (timeout).
# DEVICE_PROBE="none strong strong-in-batches strong-xla-autotune-0 ..." first times those variants
# of the training step (benchmarks/augmentation_cost.py, 10 steps each, in the command's time)
# into probe.log, and trains the faster way where one is over twice as fast as the strong step
# inside the model: with each batch augmented before the step (--augment-in batches, which the
# run's resume here then needs too) or with XLA's autotuning off.
extra=()
if [ -n "${DEVICE_PROBE:-}" ]; then
  say "probe: ${DEVICE_PROBE}"
  $PY benchmarks/augmentation_cost.py --steps 10 --timeout 150 --variants $DEVICE_PROBE > "$OUT/probe.log" 2>&1
  grep -v "^[IW][0-9]" "$OUT/probe.log" | tee -a "$OUT/device.log"
  choice=$($PY - "$OUT/probe.log" <<'EOF_PY'
import sys
ms = {}
for line in open(sys.argv[1]):  # the table at the end: "  variant   ms   ratio"
    words = line.split()
    if len(words) >= 2 and not words[0].endswith(":"):
        try:
            ms[words[0]] = float(words[1])
        except ValueError:
            pass
strong = ms.get("strong", 0)
fast = {v: t for v, t in ms.items() if v in ("strong-in-batches", "strong-xla-autotune-0") and 0 < t < strong / 2}
print(min(fast, key=fast.get) if fast else "")
EOF_PY
)
  if [ "$choice" = strong-in-batches ]; then
    extra=(--augment-in batches)
    say "each batch augmented before the step (--augment-in batches): resume the run here with that flag too"
  elif [ "$choice" = strong-xla-autotune-0 ]; then
    export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_autotune_level=0"
    say "XLA autotuning off for the run"
  fi
fi
deadline=$($PY -c "print(int($MINUTES * 60 - 25))")
left=$(( deadline - ($(date +%s) - started) ))
minutes=$($PY -c "print(round(max($left - 40, 30) / 60, 2))")  # 40 s: loading the faces, building, finishing
# The device tool brings back files of at most 16 MiB: the checkpoint folder as one tar in parts.
# A snapshot every minute as well as at the end, so that a command cut short (the session's
# device time can end before the command's limit) still brings back its last epochs.
snapshot() {
  local ck="$WORK/ckpt/$NAME" snap="$WORK/snap/$NAME" parts="$WORK/parts"
  [ -f "$ck/state.json" ] || return 0
  rm -rf "$snap" "$parts" && mkdir -p "$snap" "$parts"
  # Hard links: the run replaces its files atomically, so a link keeps the version it was made
  # to; the epoch file state.json names is linked after state.json, and a file the run removed
  # in between fails this snapshot (the next one is taken a minute later).
  ln "$ck/state.json" "$snap/state.json" || return 0
  local model
  model=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['model_file'])" "$snap/state.json") || return 0
  for f in "$ck"/* "$ck"/.ferkit-checkpoint; do
    case "$(basename "$f")" in epoch*.keras) [ "$(basename "$f")" = "$model" ] || continue ;; state.json|.lock) continue ;; esac
    ln "$f" "$snap/" 2>/dev/null || return 0
  done
  tar -c -C "$WORK/snap" "$NAME" | split -b 15M -d -a 2 - "$parts/$NAME.ckpt.tar." || return 0
  rm -f "$OUT/$NAME".ckpt.tar.* && mv "$parts"/* "$OUT/"
}

say "training $NAME for at most $minutes minutes ($left s left before packing)"
timeout --signal=TERM --kill-after=10 "$left" \
  $PY train_cnn.py --data "$DATA" --name "$NAME" --max-minutes "$minutes" --models-dir "$WORK/models" \
  --plots-dir "$WORK/plots" --checkpoint-dir "$WORK/ckpt/$NAME" --cache-dir "$WORK/cache" --overwrite "$@" "${extra[@]}" \
  > "$OUT/$NAME.log" 2>&1 &
trainer=$!
while kill -0 $trainer 2>/dev/null; do
  for _ in $(seq 60); do kill -0 $trainer 2>/dev/null && sleep 1; done
  snapshot
done
wait $trainer
status=$?
say "train_cnn.py ended with status $status ($( [ $status = 124 ] && echo 'stopped at the deadline' || echo 'by itself'))"
tail -n 3 "$OUT/$NAME.log" | tee -a "$OUT/device.log"

if [ ! -f "$WORK/ckpt/$NAME/state.json" ]; then
  say "error: no epoch was saved (see $NAME.log)"
  exit 1
fi
snapshot
$PY -c "import json, sys; s = json.load(open(sys.argv[1])); print('saved: epoch', s['epoch'], 'best validation', \
round(s['best_val_accuracy'], 4))" "$WORK/snap/$NAME/state.json" | tee -a "$OUT/device.log"
tar -czf "$OUT/$NAME.run.tar.gz" --exclude='*.keras' -C "$WORK" models plots 2>/dev/null
ls -l "$OUT" | tee -a "$OUT/device.log"
say "done"
