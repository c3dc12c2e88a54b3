"""What is known about one collected image: when and where it was taken, why, and what the model thought.

It travels with the image: in the inbox sidecar, then in the dataset's provenance log, then into the
workstation's copy, so a label can always be traced back to its camera, frame and suggestion.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any

# Why a frame was kept: the collector's interval, a scene change, the data loop's low confidence or state
# change, a person's "capture now", a burst into a class.
REASONS = ("interval", "change", "low", "state", "capture", "burst")


@dataclass(frozen=True)
class Sample:
    captured: float  # capture time, seconds since the epoch
    reason: str  # one of REASONS
    source: str = ""  # the source as the daemon describes it (passwords masked)
    roi: tuple[int, ...] = ()  # [x, y, width, height] crop of the frame; empty = the whole frame
    device: str = ""  # the device's id (MQTT device_id, else the host name)
    frame: int = -1  # index in the capture sequence
    suggestion: tuple[tuple[str, float], ...] = ()  # the model's top-k, best first; empty without a model
    model: str = ""  # "name version" of the model that made the suggestion
    sha256: str = ""  # of the JPEG's bytes

    @property
    def suggested(self) -> str | None:
        return self.suggestion[0][0] if self.suggestion else None

    @property
    def score(self) -> float | None:
        return self.suggestion[0][1] if self.suggestion else None

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["roi"] = list(self.roi)
        document["suggestion"] = [[label, score] for label, score in self.suggestion]
        return document

    @classmethod
    def from_json(cls, document: Any) -> "Sample":
        """The sample a JSON object describes; unknown keys are ignored, wrong types raise ``ValueError``."""
        if not isinstance(document, dict):
            raise ValueError("a sample is a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in document.items() if k in known}
        try:
            values["captured"] = float(values["captured"])
            values["reason"] = str(values["reason"])
            values["roi"] = tuple(int(v) for v in values.get("roi", ()))
            values["frame"] = int(values.get("frame", -1))
            values["suggestion"] = tuple((str(label), float(score)) for label, score in values.get("suggestion", ()))
            for name in ("source", "device", "model", "sha256"):
                values[name] = str(values.get(name, ""))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a sample: {e}") from e
        return cls(**values)
