"""Run a script with every Dropout layer passing its input through: ``python without_dropout.py
train_cnn.py ARGS``. Dropout masks are the one thing that differs between one process on two
devices and two processes with one device each (each layout draws its own); without them the two
runs must agree to float rounding, which is what the scaling test checks."""

import runpy
import sys
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
keras.layers.Dropout.call = lambda self, inputs, training=False: inputs
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
