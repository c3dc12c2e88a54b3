"""edgesight on the workstation: image folder → Keras CNN → evaluation → int8 TFLite bundle."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notices, absent CUDA) drowns the progress display.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
