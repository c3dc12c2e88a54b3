"""edgesight on the device: capture, preprocess, int8 inference, publish. Never imports TensorFlow."""

__version__ = "0.1.0"
