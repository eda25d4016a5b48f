# Sourced by the lent-GPU scripts (tools/device_train.sh, tools/device_longrun.sh).
# Sets OUT (what comes back), WORK and DATA from the environment (DEVICE_WORK, DEVICE_DATA), PY,
# PART_BYTES and the device tool's limits, and defines:
#   say            logs with the seconds since the start to the console and $OUT/device.log;
#   bring_back F   puts a file into $OUT whole or, where larger than a part, in parts;
#   bring_models RUNDIR NAME... [--both]  the runs' models that device_bring_back.py chooses, in
#                  the order it chooses them, within the device tool's limits, each choice said;
#   augment_in_for FLAGS  "--augment-in batches" where train_cnn.py FLAGS augment;
#   device_setup   checks the carried faces, installs the carried Keras wheels where the machine
#                  has no Keras (it has JAX with CUDA and no TensorFlow) and selects the JAX
#                  backend: the scripts call it once their arguments are checked, so a refused
#                  command line is said at once, before seconds of imports.

OUT=${OUT:-/tmp/device-out}
# DEVICE_WORK=$PWD/runs/devwork (ignored) keeps the runs for a second command on the still-warm
# machine (session 28: the tool keeps ignored folders of the checkout between its commands).
WORK=${DEVICE_WORK:-/tmp/fer-device}
DATA=${DEVICE_DATA:-data/device/fer_trainval.npz}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started )) s] $*" | tee -a "$OUT/device.log"; }
# The device tool brings back at most 8 files of at most 16 MiB each, 64 MiB together (its README).
PART_BYTES=${DEVICE_PART_BYTES:-15728640}
OUT_FILES=8
OUT_BYTES=67108864

# FILE into $OUT; one larger than a part (a width-64 model, a checkpoint) as FILE.00, FILE.01, ...:
# join them here with cat FILE.* > FILE.
bring_back() {
  if [ "$(stat -c %s "$1")" -le "$PART_BYTES" ]; then
    cp "$1" "$OUT/"
  else
    split -d -a 2 -b "$PART_BYTES" "$1" "$OUT/$(basename "$1")."
  fi
}

# RUNDIR holds models/NAME_metrics.json and the models; what was chosen before an error still comes
# back (device_bring_back.py prints each choice as it makes it).
bring_models() {
  local rundir=$1
  shift
  $PY tools/device_bring_back.py "$rundir" "$OUT" "$@" --part-bytes "$PART_BYTES" --files "$OUT_FILES" \
    --bytes "$OUT_BYTES" > "$rundir/bring.txt" 2> "$rundir/bring.err" \
    || say "error: choosing the models to bring back failed: $(tail -n 1 "$rundir/bring.err") (what it chose before that follows)"
  local what line
  while IFS=$'\t' read -r what line; do
    if [ "$what" = bring ]; then bring_back "$line"; else say "$line"; fi
  done < "$rundir/bring.txt"
}

# "--augment-in batches" (each batch augmented before the step: 9 ms a step on an H200, where the
# augmentation inside the step took 605 ms on another) for train_cnn.py FLAGS that augment, nothing
# where they do not: train_cnn.py refuses --augment-in with --augment none. The last --augment wins,
# as in train_cnn.py; a bare --augment means light.
augment_in_for() {
  local on=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --augment) [ "${2:-}" = none ] && on=0 || on=1 ;;
      --augment=none) on=0 ;;
      --augment=*) on=1 ;;
    esac
    shift
  done
  [ $on = 1 ] && echo --augment-in batches
  return 0
}

device_setup() {
  if [ ! -f "$DATA" ]; then
    say "error: $DATA is missing: write it with tools/export_npz.py (see the top of this script) and carry data/device"
    exit 2
  fi
  # ferkit from this checkout (it is not installed there) for the scripts outside its root too
  # (benchmarks/); KERAS_BACKEND for every process.
  export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if ! $PY -c "import keras" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { say "error: no keras here and no .whl/ carried (see the top of this script)"; exit 2; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
      || { say "error: installing the carried wheels failed"; exit 2; }
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  # Several processes may share the GPU: each takes memory as it needs it, not 75% at the start.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  $PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1 \
    | tee -a "$OUT/device.log"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/device.log"
  fi
}
