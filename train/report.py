"""An evaluation written for people: metrics.json, report.md (+ plots/*.png) and a self-contained report.html.

Both documents are rendered from one list of blocks (headings, paragraphs, tables, figures); the HTML
embeds every plot as a base64 PNG so it can be mailed or archived as one file.
"""

import base64
import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from train.compare import COMPARISON_FILE
from train.evaluate import CALIBRATION_MIN_BIN, Evaluation, misclassified, reliability, top_k_key
from train.run import HISTORY_FILE, METRICS_FILE, Run

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class Block:
    kind: str  # "h2", "p", "table", "figure"
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    png: bytes = b""
    file: str = ""


def _png(figure: Figure) -> bytes:
    # Figure without pyplot: no global state, no display backend, nothing to close.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_confusion(evaluation: Evaluation) -> bytes:
    models = list(evaluation.metrics["models"])
    n = len(evaluation.classes)
    side = max(3.5, 0.45 * n + 1.5)
    figure = Figure(figsize=(side * len(models), side))
    axes = figure.subplots(1, len(models), squeeze=False)
    for ax, name in zip(axes[0], models, strict=True):
        counts = np.asarray(evaluation.metrics["models"][name]["confusion"])
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        counts[i, j],
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
        ax.set(
            title=f"{name}: confusion (counts, colour = row share)",
            xlabel="predicted",
            ylabel="true",
            xticks=range(n),
            yticks=range(n),
            xticklabels=evaluation.classes,
            yticklabels=evaluation.classes,
        )
        ax.tick_params(axis="x", labelrotation=90)
    return _png(figure)


def plot_per_class(evaluation: Evaluation) -> bytes:
    models = list(evaluation.metrics["models"])
    n = len(evaluation.classes)
    figure = Figure(figsize=(max(6, 0.5 * n * len(models)), 3.5))
    ax = figure.subplots()
    width = 0.8 / len(models)
    for k, name in enumerate(models):
        per_class = evaluation.metrics["models"][name]["per_class"]
        ax.bar(np.arange(n) + k * width, [per_class[c]["f1"] for c in evaluation.classes], width, label=name)
    ax.set(title="F1 per class", ylim=(0, 1.05), ylabel="F1", xticks=np.arange(n) + 0.4 - width / 2)
    ax.set_xticklabels(evaluation.classes, rotation=90 if n > 12 else 0)
    ax.legend(loc="lower right")
    return _png(figure)


def calibration_figure(evaluation: Evaluation) -> Figure:
    """Accuracy by confidence; bins of fewer than CALIBRATION_MIN_BIN images are hollow and left out of the line."""
    figure = Figure(figsize=(4.5, 4.5))
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    sparse_seen = False
    for name, probabilities in evaluation.probabilities.items():
        bins = reliability(probabilities, evaluation.labels)
        solid = [b for b in bins if b.count >= CALIBRATION_MIN_BIN]
        sparse = [b for b in bins if b.count < CALIBRATION_MIN_BIN]
        (line,) = ax.plot(
            [b.confidence for b in solid],
            [b.accuracy for b in solid],
            marker="o",
            label=f"{name} (ECE {evaluation.metrics['models'][name]['ece']:.3f})",
        )
        if sparse:
            ax.plot(
                [b.confidence for b in sparse],
                [b.accuracy for b in sparse],
                linestyle="none",
                marker="o",
                markerfacecolor="none",
                color=line.get_color(),
                label=None if sparse_seen else f"hollow: fewer than {CALIBRATION_MIN_BIN} images",
            )
            sparse_seen = True
    ax.set(
        title="Reliability: accuracy by confidence",
        xlabel="confidence",
        ylabel="accuracy",
        xlim=(0, 1.02),
        ylim=(-0.03, 1.03),  # points on the edges stay visible
    )
    ax.legend(loc="best", fontsize=8)  # away from the points, wherever they are
    return figure


def plot_calibration(evaluation: Evaluation) -> bytes:
    return _png(calibration_figure(evaluation))


def plot_history(path: Path) -> bytes | None:
    if not path.is_file():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure = Figure(figsize=(9, 3.5))
    loss, accuracy = figure.subplots(1, 2)
    for ax, key in ((loss, "loss"), (accuracy, "accuracy")):
        ax.plot(epochs, [float(r[key]) for r in rows], label="train")
        ax.plot(epochs, [float(r[f"val_{key}"]) for r in rows], label="validation")
        ax.set(title=f"training {key}", xlabel="epoch")
        ax.legend()
    return _png(figure)


def plot_gallery(evaluation: Evaluation, model: str) -> bytes | None:
    wrong = misclassified(evaluation, model)
    if not wrong:
        return None
    columns = min(8, len(wrong))
    rows = int(np.ceil(len(wrong) / columns))
    figure = Figure(figsize=(2.2 * columns, 2.5 * rows))  # thumbnails big enough to judge
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (i, true, predicted, p) in zip(axes.flat, wrong, strict=False):
        pixels = evaluation.images[i]
        ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{true} → {predicted}\n{p:.2f}", fontsize=8)
    return _png(figure)


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def blocks(evaluation: Evaluation, run: Run | None) -> list[Block]:
    """The report's content, in reading order."""
    metrics = evaluation.metrics
    models = metrics["models"]
    k_key = top_k_key(next(iter(models.values())))  # None with too few classes for a top-k to mean anything
    out = [
        Block(
            "p",
            f"{metrics['images']} images evaluated ({metrics['evaluated_on']}), {len(evaluation.classes)}"
            f" classes; {len(metrics['unreadable'])} unreadable file(s) skipped.",
        ),
        *(Block("p", f"Note: {note}.") for note in metrics.get("notes", [])),
        Block("h2", "Summary"),
        Block(
            "table",
            header=(
                "model",
                "accuracy",
                *([k_key.replace("_", " ")] if k_key else []),
                "macro F1",
                "ECE",
                "agreement with float",
            ),
            rows=tuple(
                (
                    name,
                    _fmt(m["accuracy"]),
                    *([_fmt(m[k_key])] if k_key else []),
                    _fmt(m["macro_f1"]),
                    _fmt(m["ece"]),
                    _fmt(
                        metrics.get("agreement_with_float32", {}).get(name, 1.0 if name == "float32" else float("nan"))
                    ),
                )
                for name, m in models.items()
            ),
        ),
    ]
    if run and (run.path / "quantize.json").is_file():
        q = json.loads((run.path / "quantize.json").read_text())
        out.append(
            Block(
                "p",
                f"Quantization ({q['io']} I/O, {q['representative_images']} representative images):"
                f" float {q['float_accuracy']:.4f} → int8 {q['int8_accuracy']:.4f}, drop"
                f" {q['drop_points']:.2f} points (gate {q['max_drop']:g}): "
                f"{'passed' if q['passed'] else 'REFUSED: ' + q['refused']}; model size"
                f" {q['float_kb']:.1f} KiB float, {q['int8_kb']:.1f} KiB int8.",
            )
        )
    out += [
        Block("h2", "Confusion matrices"),
        Block("figure", png=plot_confusion(evaluation), file="confusion.png"),
        Block("h2", "Per class"),
        Block("figure", png=plot_per_class(evaluation), file="per_class.png"),
        Block(
            "table",
            header=("class", "support", *(f"{name} P / R / F1" for name in models)),
            rows=tuple(
                (
                    c,
                    str(next(iter(models.values()))["per_class"][c]["support"]),
                    *(
                        " / ".join(f"{models[n]['per_class'][c][key]:.2f}" for key in ("precision", "recall", "f1"))
                        for n in models
                    ),
                )
                for c in evaluation.classes
            ),
        ),
        Block("h2", "Calibration"),
        Block("figure", png=plot_calibration(evaluation), file="calibration.png"),
    ]
    if run:
        history = plot_history(run.path / HISTORY_FILE)
        if history:
            out += [Block("h2", "Training curves"), Block("figure", png=history, file="history.png")]
    # The device's model when there is one: its mistakes are the ones the camera will make.
    gallery_model = next((name for name in models if name not in ("float32", "baseline")), next(iter(models)))
    gallery = plot_gallery(evaluation, gallery_model)
    out.append(Block("h2", f"Misclassified ({gallery_model}, most confident first)"))
    out.append(Block("figure", png=gallery, file="misclassified.png") if gallery else Block("p", "None."))
    if run:
        out += _data_blocks(run.dataset) + _retrain_blocks(run.path)
    return out


def _retrain_blocks(path: Path) -> list[Block]:
    """How long transfer learning took, phase by phase, and the comparison with the live bundle (make retrain)."""
    out = []
    metrics = json.loads((path / METRICS_FILE).read_text()) if (path / METRICS_FILE).is_file() else {}
    if t := metrics.get("transfer"):
        cached = "read from the cache" if t["features_cached"] else ""
        rows = (
            ("backbone features", f"{t['features_seconds']:.1f}", cached),
            (
                "head (logistic regression)",
                f"{t['head_seconds']:.1f}",
                f"C={t['head_regularization']:g}, val accuracy {t['head_val_accuracy']:.4f}",
            ),
            ("fine-tuning", f"{t['fine_tune_seconds']:.1f}", f"{t['fine_tune_epochs']} epochs"),
        )
        out += [
            Block("h2", "Training time"),
            Block("table", header=("phase", "seconds", ""), rows=rows),
            Block("p", f"Backbone features: {t['features_file']}."),
        ]
    if (path / COMPARISON_FILE).is_file():
        c = json.loads((path / COMPARISON_FILE).read_text())
        scores = [("new", c["new"]), ("current", c["current"])] if c["current"] else [("new", c["new"])]
        per_class = tuple(
            (k, str(c["support"][k]), *(_fmt(s["per_class"][k]) if k in s["per_class"] else "-" for _, s in scores))
            for k in c["classes"]
        )
        overall = ("overall", str(c["images"]), *(_fmt(s["accuracy"]) for _, s in scores))
        header = ("class", "images", *(f"{who} {s['version']}" for who, s in scores))
        out += [
            Block("h2", "Against the live bundle"),
            Block("p", f"Accuracy on {c['images']} held-out images ({c['held_out']}), through the device's code path."),
            Block("table", header=header, rows=(*per_class, overall)),
            Block("p", f"Decision: {c['decision']}."),
        ]
    return out


def _data_blocks(dataset: dict) -> list[Block]:
    counts = dataset.get("class_counts", {})
    unreadable = dataset.get("unreadable", [])
    notes = [
        f"Dataset fingerprint {dataset['fingerprint'][:16]}…, {dataset['images']} files,"
        f" split {dataset['split_counts']}.",
        f"Training images per class: {counts}; largest/smallest {dataset.get('imbalance', 1.0)}"
        f" (class weights {dataset.get('class_weights')}).",
        f"{len(unreadable)} unreadable file(s): {', '.join(unreadable[:20]) or 'none'}.",
        f"{len(dataset.get('duplicates', []))} group(s) of identical files,"
        f" {dataset.get('duplicates_across_splits', 0)} across splits.",
    ]
    rows = tuple((" = ".join(g["relpaths"]), ", ".join(g["splits"])) for g in dataset.get("duplicates", [])[:20])
    out = [Block("h2", "Data"), *(Block("p", n) for n in notes)]
    if rows:
        out.append(Block("table", header=("identical files", "splits"), rows=rows))
    return out


def to_markdown(title: str, content: list[Block]) -> str:
    lines = [f"# {title}", ""]
    for block in content:
        if block.kind == "h2":
            lines += [f"## {block.text}", ""]
        elif block.kind == "p":
            lines += [block.text, ""]
        elif block.kind == "table":
            lines.append("| " + " | ".join(block.header) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            lines.append("")
        elif block.kind == "figure":
            lines += [f"![{block.file}]({PLOTS_DIR}/{block.file})", ""]
    return "\n".join(lines)


def to_html(title: str, content: list[Block]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in content:
        if block.kind == "h2":
            parts.append(f"<h2>{html.escape(block.text)}</h2>")
        elif block.kind == "p":
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif block.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif block.kind == "figure":
            data = base64.b64encode(block.png).decode()
            parts.append(f"<p><img alt='{html.escape(block.file)}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(evaluation: Evaluation, out: Path, title: str, run: Run | None) -> Path:
    """Write metrics.json, report.md with plots/, and report.html into ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(evaluation.metrics, indent=2) + "\n")
    content = blocks(evaluation, run)
    (out / PLOTS_DIR).mkdir(exist_ok=True)
    for block in content:
        if block.kind == "figure":
            (out / PLOTS_DIR / block.file).write_bytes(block.png)
    (out / "report.md").write_text(to_markdown(title, content))
    (out / "report.html").write_text(to_html(title, content))
    return out
