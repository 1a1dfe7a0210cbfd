"""``edge-eval --report OUT``: the evaluation a quality engineer reads before a bundle goes on the line.

From one :class:`~calibration.evaluate.Evaluation` (the deployed bundle run through ``edge``'s
``Inspector``) this writes ``OUT/report.md`` with its images in ``OUT/img/``, and
``OUT/report.html``, the same report in one self-contained file. Sections, in the order they are
read: summary (what the bundle is, its figures), per defect type, confusion counts and unreadable
images, curves, where the threshold sits (score histogram, what-if table), galleries. With
several evaluations, :func:`write_comparison` writes one table and the overlaid curves instead.
Charts need the optional ``report`` extra (matplotlib); galleries need only OpenCV.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from calibration import report_gallery as gallery
from calibration import report_plots as plots
from calibration.evaluate import OVERALL, Evaluation
from calibration.metrics import f1_optimal_threshold, what_if, zero_escape_threshold
from calibration.pixelmetrics import FPR_LIMIT
from calibration.report_doc import Document, cell

log = logging.getLogger(__name__)

IMG = "img"
WHAT_IF_FACTORS = (0.8, 0.9, 1.1, 1.2)


def _write(document: Document, out: Path) -> dict[str, Path]:
    md, page = out / "report.md", out / "report.html"
    md.write_text(document.markdown(), encoding="utf-8")
    page.write_text(document.html(out), encoding="utf-8")
    return {"markdown": md, "html": page}


def summary_rows(evaluation: Evaluation) -> list[list[Any]]:
    """The summary table: what the bundle is, how it was calibrated, and its headline figures."""
    f, info = evaluation.figures, evaluation.figures["bundle_info"]
    total = f["latency_ms"].get("total", {})
    params = ", ".join(f"{k} {v}" for k, v in info["calibration_params"].items())
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return [
        ["bundle id", f["bundle_id"]],
        ["model family / backbone", f"{info['family']} / {info['backbone']}"],
        ["graph / precision / engine", f"{info['format']} / {info['precision']} / {info['engine']}"],
        ["memory bank", "x".join(map(str, info["memory_bank"])) if info["memory_bank"] else "n/a"],
        ["bundle size (MB)", f"{info['size_mb']:.2f}"],
        ["training data (images)", f"{info['training_data']} ({info['n_train_images']})"],
        ["calibration", f"{info['calibration_strategy']} ({params}) on {info['calibration_images']} good images, "
                        f"{info['calibrated']}"],
        ["image threshold / pixel threshold", f"{f['threshold']:.4f} / {f['pixel_threshold']:.4f}"],
        ["versions", versions],
        ["test set", f"{f['data']}: {f['n_good']} good, {f['n_defect']} defect images"],
        ["image AUROC", f["image_auroc"]],
        ["pixel AUROC", f["pixel_auroc"]],
        [f"AUPRO (FPR limit {FPR_LIMIT})", f["aupro"]],
        ["F1 at the threshold", f["f1"]],
        ["false-reject rate", f["false_reject_rate"]],
        ["escape rate", f["escape_rate"]],
        ["latency p50 / p95 (ms)", f"{total.get('p50', float('nan')):.1f} / {total.get('p95', float('nan')):.1f}"],
    ]


def what_if_rows(evaluation: Evaluation) -> list[list[Any]]:
    """False-reject and escape rates at thresholds around the calibrated one, F1-optimal and zero-escape included."""
    labels, scores, threshold = evaluation.labels, evaluation.scores, evaluation.threshold
    named = {f"calibrated ({evaluation.figures['strategy']})": threshold}
    named |= {f"calibrated x {factor}": threshold * factor for factor in WHAT_IF_FACTORS}
    if labels.any() and not labels.all():
        named["F1-optimal"] = f1_optimal_threshold(labels, scores)[0]
        named["highest with zero escapes"] = zero_escape_threshold(labels, scores)
        named["lowest with zero false rejects"] = float(scores[~labels].max())
    return [[r["name"], r["threshold"], 0.5 * r["threshold"] / threshold, r["false_reject_rate"], r["escape_rate"],
             r["f1"], r["false_rejects"], r["escapes"]] for r in what_if(labels, scores, named)]


def write_report(evaluation: Evaluation, out: Path, gallery_count: int = 8, per_type: int = 3,
                 check: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Path]:
    """Write the report for one evaluation into ``out``; the paths of report.md and report.html."""
    plots.require_matplotlib()
    t0 = time.perf_counter()
    img = out / IMG
    img.mkdir(parents=True, exist_ok=True)
    f = evaluation.figures
    steps = tqdm(total=6, desc="report", unit="part", disable=not progress)
    doc = Document(f"Evaluation of {Path(f['bundle']).name} on {Path(f['data']).name}")
    doc.text(f"Every figure comes from the bundle run through edge's own Inspector at its calibrated threshold "
             f"(NG = score above it). Written {time.strftime('%Y-%m-%d %H:%M')} by edge-eval.", note=True)
    doc.heading("Summary")
    doc.table(["", "value"], summary_rows(evaluation))
    doc.heading("Per defect type")
    rows = [[t, m["n_images"] - m["n_good"], m["image_auroc"], m["pixel_auroc"], m["aupro"], m["escapes"],
             m["mean_regions"], m["n_regions_gt"]] for t, m in f["per_defect_type"].items()]
    rows.append(["good", f["good"]["n_images"], None, None, None, f"{f['good']['false_rejects']} false rejects",
                 f["good"]["mean_regions"], 0])
    doc.table(["defect type", "images", "image AUROC", "pixel AUROC", "AUPRO", "escapes", "mean regions",
               "GT regions"], rows)
    doc.text("Image and pixel AUROC and AUPRO of a defect type rank its images against the good ones; "
             "mean regions is the mean count of boxes the edge would publish per image.", note=True)
    doc.heading("Confusion counts")
    c = f["confusion"]
    doc.table(["", "called NG", "called OK"], [["defect", c["true_ng"], f"{c['escapes']} (escapes)"],
                                               ["good", f"{c['false_rejects']} (false rejects)", c["true_ok"]]])
    doc.text("Unreadable images: " + (", ".join(f["unreadable"]) if f["unreadable"] else "none."))
    steps.update()
    doc.heading("Curves")
    plots.image_curves(img / "image_curves.png", evaluation)
    doc.figure(f"{IMG}/image_curves.png", "image ROC and precision-recall with the operating point")
    if evaluation.pixels:
        plots.pixel_curves(img / "pixel_curves.png", evaluation)
        doc.figure(f"{IMG}/pixel_curves.png", "pixel ROC and PRO curve")
    steps.update()
    pixels = evaluation.pixels.get(OVERALL)
    if pixels is not None:
        doc.text(f"Pixel figures at the masks' full resolution: {pixels.n_defect_pixels + pixels.n_good_pixels:,} "
                 f"pixels, {pixels.n_regions} ground-truth regions (8-connected), binned into "
                 f"{pixels.fpr.size - 1:,} score bins in {f['timing']['pixel_metrics_s']} s.", note=True)
    if check:
        doc.text(f"Check on {check['images']} images ({check['pixels']:,} pixels): pixel AUROC binned "
                 f"{check['auroc_binned']:.6f} vs exact {check['auroc_exact']:.6f}, AUPRO binned "
                 f"{check['aupro_binned']:.6f} vs exact {check['aupro_exact']:.6f}.", note=True)
    doc.heading("Where the threshold sits")
    plots.score_histogram(img / "scores.png", evaluation)
    doc.figure(f"{IMG}/scores.png", "score histogram per defect type with the threshold")
    doc.table(["threshold", "value", "normalised", "false-reject rate", "escape rate", "F1", "false rejects",
               "escapes"], what_if_rows(evaluation))
    steps.update()
    thresholds = f"image threshold {f['threshold']:.4f}"
    doc.heading("Lowest-scored defects (escapes first)")
    doc.text(f"The {gallery_count} defect images that came closest to passing ({thresholds}). Left: the image; "
             "right: the heatmap (yellow to red above the pixel threshold, fading out below it), the region "
             "boxes the edge publishes (magenta) and the ground-truth outline (green).", note=True)
    doc.gallery(_rel(gallery.write_tiles(evaluation, gallery.lowest_defects(evaluation, gallery_count), img,
                                         "escape"), out))
    steps.update()
    doc.heading("Highest-scored good parts (false rejects first)")
    doc.gallery(_rel(gallery.write_tiles(evaluation, gallery.highest_good(evaluation, gallery_count), img,
                                         "good"), out))
    steps.update()
    doc.heading("Correct detections per defect type")
    for defect_type, results in gallery.detections_by_type(evaluation, per_type).items():
        doc.text(f"**{defect_type}**")
        doc.gallery(_rel(gallery.write_tiles(evaluation, results, img, f"detect-{defect_type}"), out))
    steps.update()
    steps.close()
    doc.text(f"Report drawn in {time.perf_counter() - t0:.1f} s; inference {f['timing']['inference_s']} s.", note=True)
    return _write(doc, out)


def _rel(tiles: list[tuple[Path, str]], out: Path) -> list[tuple[str, str]]:
    return [(path.relative_to(out).as_posix(), text) for path, text in tiles]


def write_comparison(evaluations: Sequence[Evaluation], names: Sequence[str], out: Path) -> dict[str, Path]:
    """One table (a row per bundle) and the ROC and PRO curves overlaid, into ``out``."""
    plots.require_matplotlib()
    img = out / IMG
    img.mkdir(parents=True, exist_ok=True)
    data = evaluations[0].figures["data"]
    doc = Document(f"Comparison of {len(evaluations)} bundles on {Path(data).name}")
    doc.text("Each bundle at its own calibrated threshold, run through edge's Inspector on the same images; "
             "the bundles took turns image by image, so their latencies were measured under the same load.",
             note=True)
    doc.heading("Bundles")
    doc.table(*comparison_table(evaluations, names))
    doc.heading("Per defect type: image AUROC / AUPRO / escapes")
    types = list(evaluations[0].figures["per_defect_type"])
    rows = []
    for defect_type in types:
        row: list[Any] = [defect_type]
        for evaluation in evaluations:
            m = evaluation.figures["per_defect_type"][defect_type]
            row.append(f"{cell(m['image_auroc'])} / {cell(m['aupro'])} / {m['escapes']}")
        rows.append(row)
    doc.table(["defect type", *names], rows)
    doc.heading("Curves")
    plots.compare_curves(img / "compare_curves.png", evaluations, names)
    doc.figure(f"{IMG}/compare_curves.png", "image ROC, pixel ROC and PRO of every bundle overlaid")
    return _write(doc, out)


def comparison_table(evaluations: Sequence[Evaluation], names: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the comparison: family, precision, engine, AUROCs, AUPRO, FRR/escape, p50, size."""
    header = ["bundle", "family / backbone", "precision", "engine", "image AUROC", "pixel AUROC", "AUPRO",
              "threshold", "FRR", "escape", "p50 (ms)", "size (MB)"]
    rows = []
    for evaluation, name in zip(evaluations, names, strict=True):
        f, info = evaluation.figures, evaluation.figures["bundle_info"]
        p50 = f["latency_ms"].get("total", {}).get("p50", float("nan"))
        rows.append([name, f"{info['family']} / {info['backbone']}", f"{info['format']} {info['precision']}",
                     info["engine"], f["image_auroc"], f["pixel_auroc"], f["aupro"], f["threshold"],
                     f["false_reject_rate"], f["escape_rate"], f"{p50:.2f}", f"{info['size_mb']:.2f}"])
    return header, rows
