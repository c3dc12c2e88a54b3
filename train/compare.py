"""A new bundle against the one it would replace, on the same held-out images, through the device's code path.

Both bundles classify the original files with ``edge.classifier`` (the daemon's preprocessing contract,
interpreter and postprocessing); accuracy is counted overall and per class, with the images each one
gets right where the other does not. The new bundle passes when its accuracy is not lower than the
current one's by more than ``margin`` points. The held-out images are the test split of the run that
made the new bundle when DATA is the folder it was trained on (images it never saw), else every image
of DATA. Labels are matched by name: an image of a class a bundle does not know counts as wrong for it.
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.bundle import Bundle, load_bundle
from edge.classifier import Classifier
from edge.errors import EXIT_DATA, EdgesightError
from train.data import Example, discover, read_examples

log = logging.getLogger(__name__)

EXIT_WORSE = 1  # like cmp and diff: 0 = passes, 1 = refused, >= 64 = could not compare
COMPARISON_FILE = "compare.json"  # in a run directory, where make retrain writes it and the report reads it
NO_CURRENT = "none"  # CURRENT when nothing is live yet: the new bundle passes on its own figures


@dataclass(frozen=True)
class Score:
    """One bundle's results on the held-out images."""

    bundle: str
    version: str
    accuracy: float
    per_class: dict[str, float]  # accuracy (recall) per true class
    unknown_classes: tuple[str, ...]  # classes of the images that the bundle has no label for


@dataclass(frozen=True)
class Comparison:
    held_out: str  # which images, in words
    images: int
    unreadable: tuple[str, ...]
    classes: tuple[str, ...]
    support: dict[str, int]
    new: Score
    current: Score | None
    new_right_current_wrong: int
    current_right_new_wrong: int
    margin_points: float
    passed: bool
    decision: str  # one line: what happens and why

    def to_json(self) -> dict:
        return asdict(self)


def held_out_images(new: Bundle, data: Path) -> tuple[list[Example], tuple[str, ...], str]:
    """The test split of the new bundle's run when it was trained on ``data``, else every image of ``data``."""
    dataset = discover(Path(data), min_per_class=1)
    recorded = new.manifest.training.get("run")
    if recorded and (Path(recorded) / "split.json").is_file():
        from train.run import load_run

        run = load_run(Path(recorded))
        if Path(run.config.data).resolve() == Path(data).resolve():
            examples = run.examples("test")
            if examples:
                return examples, run.classes, f"the test split of {run.path} ({data})"
            log.warning("%s has no test split: comparing on every image of %s", run.path, data)
    return list(dataset.examples), dataset.classes, f"every image of {data}"


def _score(
    classifier: Classifier, images: list[np.ndarray], truth: list[str], classes: tuple[str, ...]
) -> tuple[Score, np.ndarray]:
    predicted = [classifier.classify(image).label for image in images]
    right = np.asarray([p == t for p, t in zip(predicted, truth, strict=True)])
    per_class = {c: float(right[[t == c for t in truth]].mean()) for c in classes if c in truth}
    known = set(classifier.manifest.labels)
    manifest = classifier.manifest
    score = Score(
        str(classifier.bundle.path),
        manifest.version,
        float(right.mean()),
        per_class,
        tuple(c for c in classes if c not in known and c in truth),
    )
    return score, right


def compare(new_path: Path, current_path: Path | str, data: Path, margin: float) -> Comparison:
    """Measure both bundles on the held-out images of ``data`` and decide whether the new one may replace."""
    new = load_bundle(Path(new_path))
    new_classifier = Classifier(new, top_k=1)
    new_classifier.golden_check()  # the device refuses a bundle that fails it: so does the comparison
    current_classifier = None if str(current_path) == NO_CURRENT else Classifier(load_bundle(Path(current_path)))
    examples, classes, where = held_out_images(new, data)
    read = read_examples(examples, new.manifest.preprocess, keep_originals=True)
    images, unreadable = list(read.originals), read.unreadable
    truth = [classes[example.label] for example in read.good]
    if unreadable:
        log.warning("%d unreadable image(s) skipped: %s", len(unreadable), ", ".join(unreadable[:5]))
    if not images:
        raise EdgesightError(f"{data}: no readable held-out images to compare on", EXIT_DATA)
    log.info("comparing on %d images: %s", len(images), where)
    new_score, new_right = _score(new_classifier, images, truth, classes)
    if current_classifier is None:
        current_score, current_right = None, np.zeros(len(images), bool)
        passed = True
        decision = f"deploy: nothing is live yet (new {100 * new_score.accuracy:.2f} %)"
    else:
        current_score, current_right = _score(current_classifier, images, truth, classes)
        difference = 100 * (new_score.accuracy - current_score.accuracy)
        passed = difference >= -margin
        verdict = "deploy" if passed else "keep the current bundle"
        decision = (
            f"{verdict}: new {100 * new_score.accuracy:.2f} % vs current {100 * current_score.accuracy:.2f} %"
            f" ({difference:+.2f} points; worse by more than {margin:g} is refused)"
        )
    return Comparison(
        held_out=where,
        images=len(images),
        unreadable=tuple(unreadable),
        classes=classes,
        support={c: truth.count(c) for c in classes},
        new=new_score,
        current=current_score,
        new_right_current_wrong=int((new_right & ~current_right).sum()) if current_score else 0,
        current_right_new_wrong=int((current_right & ~new_right).sum()),
        margin_points=margin,
        passed=passed,
        decision=decision,
    )


def table(comparison: Comparison) -> str:
    """The comparison as a fixed-width table for the terminal."""
    new, current = comparison.new, comparison.current
    columns = [f"new {new.version}"] + ([f"current {current.version}"] if current else [])
    width = max(12, *(len(c) + 2 for c in columns))
    name_width = max(10, *(len(c) + 2 for c in comparison.classes))
    lines = [
        f"held out: {comparison.images} images, {comparison.held_out}",
        f"{'class':{name_width}}{'images':>8}" + "".join(f"{c:>{width}}" for c in columns),
    ]
    for c in comparison.classes:
        cells = [s.per_class.get(c) for s in (new, current) if s is not None]
        lines.append(
            f"{c:{name_width}}{comparison.support[c]:>8}"
            + "".join(f"{'-' if v is None else f'{100 * v:.1f} %':>{width}}" for v in cells)
        )
    overall = "".join(f"{100 * s.accuracy:.2f} %".rjust(width) for s in (new, current) if s is not None)
    lines.append(f"{'overall':{name_width}}{comparison.images:>8}{overall}")
    if current:
        lines.append(
            f"new right where current wrong: {comparison.new_right_current_wrong};"
            f" current right where new wrong: {comparison.current_right_new_wrong}"
        )
        for score, who in ((new, "new"), (current, "current")):
            if score.unknown_classes:
                lines.append(f"the {who} bundle has no label for: {', '.join(score.unknown_classes)}")
    lines.append(comparison.decision)
    return "\n".join(lines)


def write_comparison(comparison: Comparison, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(comparison.to_json(), indent=2) + "\n")
    return out
