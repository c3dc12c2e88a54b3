"""edgesight on the workstation: image folder → Keras CNN → evaluation → int8 TFLite bundle."""
