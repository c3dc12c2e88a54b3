"""The usual example loop, as the public Raspberry Pi TFLite examples write it, for comparison.

Synchronous: read a frame, ``cv2.resize``, ``cvtColor``, float normalization, quantize, ``invoke``,
dequantize, top-k, print; then read the next one. It prints one JSON line per frame like
``edgesight run``, so the benchmark measures both programs the same way.

``python -m bench.usual --model M.tflite --source VIDEO_OR_URL [--runtime litert|tensorflow]``
"""

import argparse
import json
import sys
import time

import cv2
import numpy as np

RUNTIMES = ("litert", "tensorflow")


def interpreter_class(runtime: str) -> type:
    """LiteRT's interpreter, or TensorFlow's own as the older examples import it."""
    if runtime == "tensorflow":
        import tensorflow as tf

        return tf.lite.Interpreter
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--source", required=True, help="a video file or a stream URL")
    parser.add_argument("--runtime", choices=RUNTIMES, default="litert")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mean", type=float, default=0.0, help="the model's normalization, pixel units")
    parser.add_argument("--std", type=float, default=1.0)
    args = parser.parse_args(argv)

    interpreter = interpreter_class(args.runtime)(model_path=args.model, num_threads=args.threads)
    interpreter.allocate_tensors()
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]
    _, height, width, channels = input_details["shape"]
    in_scale, in_zero = input_details["quantization"]
    out_scale, out_zero = output_details["quantization"]

    capture = cv2.VideoCapture(args.source)
    index = 0
    while capture.isOpened():
        ok, frame = capture.read()
        if not ok:
            break
        started = time.perf_counter()
        image = cv2.resize(frame, (width, height))
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGR2GRAY)
        pixels = (np.float32(image) - args.mean) / args.std
        if input_details["dtype"] != np.float32:
            pixels = np.clip(np.round(pixels / in_scale + in_zero), -128, 127)
        tensor = pixels.reshape(1, height, width, channels).astype(input_details["dtype"])
        interpreter.set_tensor(input_details["index"], tensor)
        interpreter.invoke()
        output = interpreter.get_tensor(output_details["index"])[0]
        scores = (output.astype(np.float32) - out_zero) * out_scale if out_scale else output
        top = np.argsort(-scores)[:3]
        latency_ms = (time.perf_counter() - started) * 1000
        record = {"frame": index, "top": [[int(i), float(scores[i])] for i in top], "latency_ms": latency_ms}
        print(json.dumps(record), flush=True)
        index += 1
    capture.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
