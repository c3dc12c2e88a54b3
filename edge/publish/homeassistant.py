"""Home Assistant MQTT discovery: the retained configs that make the device and its entities appear.

Entities, all tied to the ``available`` topic: the label (the debounced ``state``) with the state as
attributes; the confidence, live from ``result`` (so at most one update per ``result_interval_s``); one
binary sensor per class, ``on`` while that class is the state, for automations that trigger on one
class (as Frigate's per-object sensors); the annotated snapshot as a camera; and diagnostic sensors
from ``stats``, whose figures are null (``unknown`` in Home Assistant) until they are measured.
"""

import json
import re
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.publish.settings import MqttSettings
from edge.state import ModelInfo

if TYPE_CHECKING:
    from edge.publish.mqtt import Topics

ONLINE, OFFLINE = "online", "offline"
# A binary sensor per class suits a few classes; an ImageNet model's thousand would swamp Home Assistant.
MAX_CLASS_SENSORS = 32
# The smoothed score when smoothing is on, as the label sensor shows the smoothed state.
CONFIDENCE = (
    "{{ ((value_json.smoothed.score if value_json.smoothed is defined else value_json.score) * 100) | round(1) }}"
)


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def class_sensor_ids(labels: tuple[str, ...]) -> dict[str, str]:
    """Each label's object id (``class_<slug>``), unique even when two labels slug alike."""
    ids: dict[str, str] = {}
    for label in labels:
        slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "label"
        object_id, n = f"class_{slug}", 2
        while object_id in ids.values():
            object_id, n = f"class_{slug}_{n}", n + 1
        ids[label] = object_id
    return ids


def discovery_configs(settings: MqttSettings, topics: "Topics", model: ModelInfo | None) -> dict[str, bytes]:
    """Config topic → retained JSON config, for every entity the device has with this model."""
    device_id = settings.resolved_device_id()
    common = {
        "availability_topic": topics.available,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": {
            "identifiers": [f"edgesight_{device_id}"],
            "name": f"edgesight {device_id}",
            "manufacturer": "edgesight",
            "model": model.title if model else "image classifier",
            "sw_version": __version__,
        },
        "origin": {"name": "edgesight", "sw_version": __version__},
    }
    # object id: (component, config without the common fields)
    entities: dict[str, tuple[str, dict[str, Any]]] = {
        "label": (
            "sensor",
            {
                "name": "Label",
                "state_topic": topics.state,
                "value_template": "{{ value_json.label }}",
                "json_attributes_topic": topics.state,
                "icon": "mdi:image-search",
            },
        ),
        "confidence": (
            "sensor",
            {
                "name": "Confidence",
                "state_topic": topics.result,
                "value_template": CONFIDENCE,
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:gauge",
            },
        ),
    }
    labels = model.labels if model else ()
    if len(labels) <= MAX_CLASS_SENSORS:
        for label, object_id in class_sensor_ids(labels).items():
            literal = json.dumps(label, ensure_ascii=False)  # a Jinja string literal, quotes escaped
            entities[object_id] = (
                "binary_sensor",
                {
                    "name": label,
                    "state_topic": topics.state,
                    "value_template": f"{{{{ 'ON' if value_json.label == {literal} else 'OFF' }}}}",
                    "icon": "mdi:tag",
                },
            )
    if settings.snapshot_interval_s > 0:
        entities["snapshot"] = ("camera", {"name": "Snapshot", "topic": topics.snapshot})
    measured = {"unit_of_measurement": "ms", "device_class": "duration", "state_class": "measurement"}
    diagnostics = {
        "fps": ("Frames per second", "fps", {"state_class": "measurement"}),
        "latency": ("Inference latency", "latency_ms", measured),
        "frame_age": ("Frame age", "frame_age_ms", measured),
        "dropped_frames": ("Dropped frames", "dropped_frames", {"state_class": "total_increasing"}),
    }
    for object_id, (name, key, extra) in diagnostics.items():
        entities[object_id] = (
            "sensor",
            {
                "name": name,
                "state_topic": topics.stats,
                "value_template": f"{{{{ value_json.{key} }}}}",
                "entity_category": "diagnostic",
                **extra,
            },
        )
    return {
        f"{settings.discovery_prefix}/{component}/{device_id}/{object_id}/config": _json(
            {**config, "unique_id": f"edgesight_{device_id}_{object_id}", **common}
        )
        for object_id, (component, config) in entities.items()
    }


def config_topics_filter(settings: MqttSettings) -> str:
    """The subscription that finds every discovery config this device ever announced, to remove stale ones."""
    return f"{settings.discovery_prefix}/+/{settings.resolved_device_id()}/+/config"
