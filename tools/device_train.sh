#!/bin/bash
# The wide recipe on a lent GPU machine (JAX with CUDA, Python 3.12, no TensorFlow, no network),
# several seeds or variants side by side in one command that ends inside the device tool's 10
# minutes; each run's model (the best epoch or the weight average of its last quarter, whichever
# scores higher on validation) and all logs come back in $OUT. Choosing between the runs and the
# PrivateTest read happen on the CPU machine afterwards, on the original faces (README, "Scaling
# out", "One GPU").
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
# Usage: tools/device_train.sh [MINUTES] [RUN...]   (default: 7 minutes of training; runs 0 1 2)
# A RUN is a seed (the recipe as it is, named wide48_sSEED) or NAME=FLAGS, a variant with flags of
# its own, to compare recipes side by side and choose on validation here, e.g.
#   bash tools/device_train.sh 8.5 "strong=--seed 0" "light=--augment light" "w64=--width 64"
# The script sizes --epochs, --swa-epochs and --max-minutes and names the data and folders itself:
# a run's flags may not set them. The runs' models come back best first (on validation) while they
# fit the tool's 8 files and 64 MiB beside device.log and runs.tar.gz; a model larger than a part
# (15 MiB: width 64 and up) comes back in parts; device.log names any model left out.
# Every run also stops at its time limit (train_cnn.py --max-minutes), so the command always ends
# with models to bring back; a short probe first measures each run's epoch with all of them side by
# side and sizes its --epochs to fit, so its cosine schedule ends at a low rate as it should (a
# wider variant trains fewer epochs).
# The runs live in $WORK/device_train, cleared at the start: with DEVICE_WORK kept on a warm
# machine, an earlier command's probes and logs would otherwise be read as this one's (its models
# came back with that command; device_longrun.sh's runs, in $WORK/models, are left alone).
# On this CPU, to prove it (tests/test_scaling.py does, in a process that cannot import TensorFlow):
#   OUT=/tmp/o DEVICE_DATA=small.npz DEVICE_FLAGS="--width 8 --batch-size 32" tools/device_train.sh 0.5 0 1

set -u -o pipefail
MINUTES=${1:-7}
shift || true
if [ $# -gt 0 ]; then RUNS=("$@"); else RUNS=(0 1 2); fi
. tools/device_env.sh  # OUT, WORK, DATA, PY, PART_BYTES, say, bring_models, augment_in_for, device_setup
case "$MINUTES" in ''|*[!0-9.]*) say "error: MINUTES must be a number of minutes, not '$MINUTES'"; exit 2 ;; esac

# The recipe: --preset wide (VGG trunk 48-384 on random 40x40 crops, SGD Nesterov, cosine with a
# warm-up, strong augmentation with random erasing, label smoothing, bf16), a weight average over
# the last quarter of the epochs. Extra flags for every run: DEVICE_FLAGS; a variant's own come
# after them and win. The augmentation runs on each batch before the step (--augment-in batches,
# where a run augments at all; a variant may still ask for --augment-in model): on an H200 the step
# then took 9 ms, 2.6 s an epoch with validation and checkpoint (session 28), where the strong
# augmentation inside the step had taken 605 ms on another one (session 27; README, "A long run's
# head start on a lent GPU"). What the script sizes comes last, so no flag can override it.
train() {  # name seed epochs minutes swa-epochs [flags...]
  local name=$1 seed=$2 epochs=$3 minutes=$4 swa=$5
  shift 5
  local flags=(${DEVICE_FLAGS:-} "$@")
  local augment_in=($(augment_in_for ${flags[@]+"${flags[@]}"}))
  $PY train_cnn.py --data "$DATA" --preset wide --name "$name" --seed "$seed" ${augment_in[@]+"${augment_in[@]}"} \
    ${flags[@]+"${flags[@]}"} --epochs "$epochs" --max-minutes "$minutes" --swa-epochs "$swa" \
    --models-dir "$RUNDIR/models" --plots-dir "$RUNDIR/plots" --checkpoint-dir "$RUNDIR/ckpt/$name" \
    --cache-dir "$WORK/cache" --fresh --overwrite
}

# Seeds are named by the width (--width in DEVICE_FLAGS, else the preset's 48): wide48_s0, ...
width=48
[[ " ${DEVICE_FLAGS:-} " =~ .*--width[=[:space:]]+([0-9]+) ]] && width=$((10#${BASH_REMATCH[1]}))
SIZED="--epochs --swa-epochs --max-minutes --name --data --models-dir --plots-dir --checkpoint-dir --cache-dir"
refuse_sized() {  # WHO FLAGS...: refuse a flag the script sets itself
  local who=$1 flag
  shift
  for flag in "$@"; do
    if [[ " $SIZED " == *" ${flag%%=*} "* ]]; then
      say "error: $who sets ${flag%%=*}, which the script sets itself (it sizes the epochs to the time): leave it out"
      exit 2
    fi
  done
}
refuse_sized DEVICE_FLAGS ${DEVICE_FLAGS:-}
NAMES=()
declare -A SEED FLAGS
for run in "${RUNS[@]}"; do
  if [[ $run =~ ^[0-9]+$ ]]; then
    name=wide${width}_s$run
    SEED[$name]=$run
    FLAGS[$name]=""
  elif [[ $run =~ ^([A-Za-z0-9][A-Za-z0-9_-]*)=(.*)$ ]]; then
    name=${BASH_REMATCH[1]}
    SEED[$name]=0  # a --seed among its flags comes later and wins
    FLAGS[$name]=${BASH_REMATCH[2]}
    if [[ $name =~ ^probe[0-9]+$ || $name == *_swa ]]; then
      say "error: the name '$name' is taken by the script's own files (probeN, NAME_swa): name the variant otherwise"
      exit 2
    fi
    refuse_sized "$name" ${FLAGS[$name]}
  else
    say "error: a run is a seed (0) or NAME=FLAGS (light=--augment light), not '$run'"
    exit 2
  fi
  if [[ " ${NAMES[*]:-} " == *" $name "* ]]; then
    say "error: two runs are named $name: give each variant a name of its own"
    exit 2
  fi
  NAMES+=("$name")
done

device_setup  # the data check, the carried wheels, JAX
RUNDIR=$WORK/device_train
rm -rf "$RUNDIR"
mkdir -p "$RUNDIR/logs"

# Probe: two epochs of every run at once; the second one's time (no compiling in it) sizes each run.
# Its weight average of epoch 2 tries the end of a run (BatchNorm re-measured) before the long runs;
# its warm-up is one epoch whatever the run's (two would not fit two epochs; it does not change the
# time an epoch takes).
say "probe: 2 epochs x ${#NAMES[@]} runs side by side"
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]}
  train "probe$i" "${SEED[$name]}" 2 0 1 ${FLAGS[$name]} --warmup-epochs 1 > "$RUNDIR/logs/probe$i.log" 2>&1 &
done
wait
left=$($PY -c "print(int(max($MINUTES * 60 - ($(date +%s) - $started), 30)))")  # seconds
# Per run: "epoch-seconds compile-seconds epochs", 8% to spare (epochs vary; the runs compile
# again before their first epoch), or "0 0 0" where its probe trained no epoch.
mapfile -t SIZES < <($PY - "$RUNDIR" "$left" "${#NAMES[@]}" <<'EOF'
import json, sys
rundir, left, runs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
for i in range(runs):
    try:  # one probe's odd record must not cost the runs after it their sizes
        history = json.load(open(f"{rundir}/models/probe{i}_metrics.json"))["history"]
        ended = history["ended_at"]  # epoch 2 end to end: training, validation, checkpoint
        epoch = ended[1] - ended[0]
        compile = max(history["seconds"][0] - history["seconds"][1], 0)  # epoch 1 also compiles
        print(round(epoch, 1), round(compile, 1), max(4, int((left - compile) * 0.92 / epoch)))
    except (OSError, ValueError, KeyError, IndexError, TypeError, ZeroDivisionError):
        print(0, 0, 0)
EOF
)
STARTED=()
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]}
  read -r epoch_seconds compile_seconds epochs <<< "${SIZES[$i]:-0 0 0}"
  if [ "${epochs:-0}" = 0 ]; then
    say "$name: its probe trained no epoch (logs/probe$i.log in runs.tar.gz); left out"
    continue
  fi
  swa=$(( epochs / 4 ))
  say "$name: an epoch takes ${epoch_seconds} s side by side (compiling ${compile_seconds} s): ${epochs} epochs in the ${left} s left (weight average of the last $swa)"
  train "$name" "${SEED[$name]}" "$epochs" "$($PY -c "print($left / 60)")" "$swa" ${FLAGS[$name]} \
    > "$RUNDIR/logs/$name.log" 2>&1 &
  STARTED+=("$name")
done
if [ ${#STARTED[@]} = 0 ]; then
  tar -czf "$OUT/runs.tar.gz" -C "$RUNDIR" logs
  say "error: no probe trained an epoch; their logs are in runs.tar.gz"
  exit 1
fi
wait
say "runs finished"

# One archive of the logs, metrics, curves and plots; then, per run, the model that scores higher on
# validation (the best epoch or the weight average), best run first, while they fit what the device
# tool brings back beside what $OUT already holds.
tar -czf "$OUT/runs.tar.gz" --exclude='*.keras' -C "$RUNDIR" models plots logs
bring_models "$RUNDIR" "${STARTED[@]}"
say "done"
