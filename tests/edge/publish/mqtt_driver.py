"""Stand-in for the daemon until it publishes by itself: classify images in a loop and publish over MQTT.

python -m tests.edge.publish.mqtt_driver --port 1883 --device pi --bundle BUNDLE --images DIR
"""

import argparse
import logging
import time
from pathlib import Path

from edge.bundle import load_bundle
from edge.classifier import Classifier
from edge.images import image_files, read_image
from edge.publish.mqtt import MqttSink
from edge.publish.settings import MqttSettings
from edge.publish.telemetry import Telemetry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    bundle = load_bundle(args.bundle)
    classifier = Classifier(bundle, num_threads=1)
    images = [read_image(p) for p in image_files(args.images)]
    telemetry = Telemetry(args.device)
    telemetry.set_model(bundle.manifest.name, bundle.manifest.version)
    sink = MqttSink(
        MqttSettings(host="127.0.0.1", port=args.port, device_id=args.device, keepalive=60, debounce=1), telemetry
    )
    sink.start()
    frame = 0
    while True:  # until killed
        image = images[frame % len(images)]
        result = {"ts": round(time.time(), 3), "frame": frame, **classifier.classify(image).to_json()}
        telemetry.on_result(image, result, frame_age_ms=1.0, latency_ms=result["latency_ms"])
        sink.submit(result)
        frame += 1
        time.sleep(0.05)  # pace like a camera, not a synchronization


if __name__ == "__main__":
    main()
