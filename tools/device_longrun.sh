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
#   run(command="bash tools/device_longrun.sh 9.3 fer_wide48k --preset wide --augment-in batches \
#       --no-mixed-precision ...", carry=[".whl", "data/device"], timeout_s=600)
# (--augment-in batches: 9 ms a step on an H200 in session 28, 120 epochs in 5 minutes; the
# augmentation inside the step had taken 605 ms on another one in session 27.) With
# DEVICE_WORK=$PWD/runs/devwork, the same command sent again while the machine is warm (30 s)
# goes on with the run there.
# and here, with what came back in FOLDER:
#   cat FOLDER/fer_wide48k.ckpt.tar.* | tar -x -C ~/.cache/fer-train/ckpt     # -> ckpt/fer_wide48k
#   python train_cnn.py --data data/device/fer_trainval.npz --name fer_wide48k \
#       --checkpoint-dir ~/.cache/fer-train/ckpt/fer_wide48k --preset wide --no-mixed-precision ...
# (--no-mixed-precision in both: "auto" judges by each machine's CPU, and a bf16 checkpoint would
# keep bf16 on a CPU that only emulates it).
# The run trains on the same carried file in both places (lossy WebP faces, 2 grey levels RMS from
# the originals), because a checkpoint resumes only on the data it was made with; its test report
# is then evaluate.py's, on the original test faces.
#
# Usage: tools/device_longrun.sh MINUTES NAME [train_cnn.py flags...]
# MINUTES is the whole command's time, start-up and packing included: the training stops at the
# last epoch that fits (--max-minutes) and is stopped for certain 25 s before the end, so the
# checkpoint (written after every epoch, atomically) always comes back; a run whose epochs all
# fit brings back its models instead (NAME.keras, NAME_swa.keras; in parts NAME.keras.NN where
# larger than a part).
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
. tools/device_env.sh  # OUT, WORK, DATA, PY, PART_BYTES, say, bring_models, device_setup

case "$MINUTES" in ''|*[!0-9.]*) say "error: MINUTES must be a number of minutes, not '$MINUTES'"; exit 2 ;; esac
device_setup  # the data check, the carried wheels, JAX
deadline=$($PY -c "print(int($MINUTES * 60 - 25))")  # the command's end, less what packing needs
elapsed() { echo $(( $(date +%s) - started )); }

# DEVICE_PROBE="none strong strong-in-batches strong-xla-autotune-0" first times those variants of
# an augmented run's training step (benchmarks/augmentation_cost.py, 10 steps each, at most the
# time that leaves 4 minutes to train) and trains the fastest way where one is over twice as fast
# as the strong step inside the model: each batch augmented before the step (--augment-in
# batches, which the run's resume here then needs too) or XLA's autotuning off.
extra=()
if [ -n "${DEVICE_PROBE:-}" ]; then
  variants=($DEVICE_PROBE)
  each=$(( (deadline - $(elapsed) - 240) / ${#variants[@]} ))
  [ $each -gt 150 ] && each=150
  if [ $each -lt 30 ]; then
    say "probe skipped: too little time for ${#variants[@]} variants and a run"
  else
    say "probe: ${DEVICE_PROBE} (at most $each s each)"
    $PY benchmarks/augmentation_cost.py --steps 10 --timeout $each --choose --variants "${variants[@]}" 2>&1 \
      | grep -v "^[IW][0-9]" | tee -a "$OUT/device.log"
    case "$(tail -n 1 "$OUT/device.log")" in
      "fastest: strong-in-batches"*)
        extra=(--augment-in batches)
        say "each batch augmented before the step (--augment-in batches): resume the run here with that flag too" ;;
      "fastest: strong-xla-autotune-0"*)
        export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_autotune_level=0"
        say "XLA autotuning off for the run" ;;
    esac
  fi
fi
left=$(( deadline - $(elapsed) ))  # the training stops an epoch early by itself (--max-minutes), and
if [ $left -lt 60 ]; then          # for certain at the deadline (timeout)
  say "error: $left s left before packing: give more MINUTES"
  exit 2
fi
minutes=$($PY -c "print(round(max($left - 40, 15) / 60, 2))")  # 40 s: loading the faces, building, finishing

# The device tool brings back files of at most 16 MiB: the checkpoint folder as one tar in parts,
# a consistent snapshot every minute as well as at the end, so that a command cut short (the
# session's device time can end before the command's limit) still brings back its last epochs.
snapshot() {
  $PY tools/snapshot_checkpoint.py "$WORK/ckpt/$NAME" "$OUT" "$NAME" --work "$WORK/snapshot" \
    --part-bytes "$PART_BYTES" 2>/dev/null
}

say "training $NAME for at most $minutes minutes ($left s left before packing)"
# The run's own flags first: the folders and the time limit here must not be overridden.
timeout --signal=TERM --kill-after=10 "$left" \
  $PY train_cnn.py "$@" ${extra[@]+"${extra[@]}"} --data "$DATA" --name "$NAME" --max-minutes "$minutes" \
  --models-dir "$WORK/models" --plots-dir "$WORK/plots" --checkpoint-dir "$WORK/ckpt/$NAME" \
  --cache-dir "$WORK/cache" --overwrite > "$OUT/$NAME.log" 2>&1 &
trainer=$!
while kill -0 $trainer 2>/dev/null; do
  for _ in $(seq 60); do kill -0 $trainer 2>/dev/null && sleep 1; done
  snapshot > /dev/null
done
wait $trainer
status=$?
case $status in
  0) how="by itself" ;;
  124|137) how="stopped at the deadline" ;;
  *) how="failed" ;;
esac
say "train_cnn.py ended with status $status ($how)"
tail -n 3 "$OUT/$NAME.log" | tee -a "$OUT/device.log"
tar -czf "$OUT/$NAME.run.tar.gz" --exclude='*.keras' -C "$WORK" models plots 2>/dev/null

if [ $status = 0 ] && [ ! -f "$WORK/ckpt/$NAME/state.json" ] && [ -f "$WORK/models/$NAME.keras" ]; then
  # Every epoch ran here: the run wrote its models and removed its checkpoint. Bring the models.
  # The minute's snapshots are stale now and would crowd the models out: the device tool brings
  # back at most 8 files (a finished wide run's 4 checkpoint parts left its weight average behind).
  rm -f "$OUT/$NAME".ckpt.tar.*
  # A model file over the part size (width 64 is about 20 MB; width 48, 11 MB) comes back in parts,
  # the better of the two on validation first, the other where the tool's files and bytes still
  # allow (from width 80 or so the two do not fit beside the logs).
  bring_models "$WORK" "$NAME" --both
  say "finished: all its epochs ran here; brought back $(cd "$OUT" && ls "$NAME"*.keras* | tr '\n' ' ')"
  exit 0
fi
if ! read -r epoch parts best < <(snapshot); then
  say "error: no epoch was saved (see $NAME.log)"
  exit 1
fi
say "saved: epoch $epoch best validation $best"
ls -l "$OUT" | tee -a "$OUT/device.log"
say "done: epoch $epoch in $parts parts"
[ "$how" = failed ] && exit 1
exit 0
