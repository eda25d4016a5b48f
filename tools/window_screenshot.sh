#!/usr/bin/env bash
# The live window, for real, on a virtual screen: runs realtime.py with the GUI OpenCV build
# under Xvfb and saves a screenshot of the screen (default plots/window.png). Not run by CI.
#
#   bash tools/window_screenshot.sh [OUT.png]
#
# Needs Debian's xvfb (`apt-get install -y xvfb`) and creates its own virtual environment in
# /tmp/fer-gui-venv: the light runtime (requirements-live.txt; the demo runs the shipped ONNX
# model) with opencv-python (the GUI build) instead of the headless one, and Pillow for the
# screenshot, so the project's environment is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-plots/window.png}"
venv=/tmp/fer-gui-venv
command -v Xvfb >/dev/null || { echo "error: Xvfb not found; install it with: apt-get install -y xvfb" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
    python -m venv "$venv"
    "$venv/bin/pip" install --quiet -r requirements-live.txt
    "$venv/bin/pip" uninstall --quiet -y opencv-python-headless
    "$venv/bin/pip" install --quiet "opencv-python<5" pillow
fi
clip=$(mktemp -d)/demo_long.avi
"$venv/bin/python" -c "from ferkit import clips, video; video.write_video(clips.demo_frames(3000), '$clip')"
Xvfb :97 -screen 0 720x542x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY=:97 "$venv/bin/python" realtime.py --source "$clip" --bars &
demo=$!
sleep "${WAIT:-10}"  # model load, then a few seconds of live video (the clip lasts ~20 s)
"$venv/bin/python" -c "from PIL import ImageGrab; ImageGrab.grab(xdisplay=':97').save('$out')"
kill "$demo" 2>/dev/null || true
wait "$demo" 2>/dev/null || true
echo "saved $out"
