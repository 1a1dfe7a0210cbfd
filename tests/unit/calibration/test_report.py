"""``edge-eval --report`` and ``--compare`` on real bottle images, through the console command's code.

A small labelled subset of the shared bottle test set (linked, not copied) keeps the run short;
the bundle is the session's tiny real bundle. The report must hold the figures the JSON holds,
be one self-contained HTML file, show the lowest-scored defects first, and need matplotlib only
when a report is asked for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PICK = {"good": 4, "broken_large": 2, "contamination": 3}


@pytest.fixture(scope="module")
def subset(tmp_path_factory, bottle) -> Path:
    """test/<type>/ and ground_truth/<type>/ of a few bottle images, as symlinks."""
    root = tmp_path_factory.mktemp("bottle-subset")
    for defect_type, count in PICK.items():
        (root / "test" / defect_type).mkdir(parents=True)
        for path in sorted((bottle / "test" / defect_type).glob("*.png"))[:count]:
            (root / "test" / defect_type / path.name).symlink_to(path)
            mask = bottle / "ground_truth" / defect_type / f"{path.stem}_mask.png"
            if defect_type != "good":
                (root / "ground_truth" / defect_type).mkdir(parents=True, exist_ok=True)
                (root / "ground_truth" / defect_type / mask.name).symlink_to(mask)
    return root


def edge_eval(*args: object, block_matplotlib: bool = False) -> subprocess.CompletedProcess:
    prelude = "import sys; sys.modules['matplotlib'] = None; " if block_matplotlib else ""
    code = prelude + "from calibration.cli import eval_main; eval_main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600, env=_env())


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_bundle, subset):
    out = tmp_path_factory.mktemp("report")
    result = edge_eval(tiny_bundle, "--data", subset, "--report", out / "r", "--json", out / "eval.json",
                       "--gallery", 3, "--per-type", 2, "--pixel-check", 4)
    assert result.returncode == 0, result.stderr
    return out / "r", json.loads((out / "eval.json").read_text()), result.stdout


def test_report_summary_and_per_type_tables_hold_the_json_figures(report):
    folder, figures, _ = report
    md = (folder / "report.md").read_text()
    for label, key in (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"),
                       ("AUPRO (FPR limit 0.3)", "aupro"), ("false-reject rate", "false_reject_rate"),
                       ("escape rate", "escape_rate")):
        assert f"| {label} | {figures[key]:.4f} |" in md
    assert figures["bundle_id"] in md
    for defect_type in ("broken_large", "contamination"):
        m = figures["per_defect_type"][defect_type]
        assert re.search(rf"\| {defect_type} \| {PICK[defect_type]} \| {m['image_auroc']:.4f} \| "
                         rf"{m['pixel_auroc']:.4f} \| {m['aupro']:.4f} \| {m['escapes']} \|", md)
    assert figures["n_images"] == sum(PICK.values())


def test_html_is_one_self_contained_file_with_every_image_of_the_markdown(report):
    folder, _, _ = report
    page = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    sources = re.findall(r'<img[^>]* src="([^"]*)"', page)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sources and len(sources) == len(linked)
    assert all(src.startswith("data:image/") for src in sources)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert all((folder / path).is_file() for path in linked)


def test_lowest_scored_defects_come_first_and_each_type_has_detections(report):
    folder, figures, _ = report
    md = (folder / "report.md").read_text()
    defects = sorted((i for i in figures["images"] if i["defect_type"] != "good"), key=lambda i: i["score"])
    escapes = md.split("## Lowest-scored defects")[1].split("## ")[0]
    shown = re.findall(r"^\*(\w+/\d+\.png)", escapes, flags=re.M)
    assert shown == [f"{i['defect_type']}/{Path(i['path']).name}" for i in defects[:3]]
    good = md.split("## Highest-scored good parts")[1].split("## ")[0]
    top_good = max((i for i in figures["images"] if i["defect_type"] == "good"), key=lambda i: i["score"])
    assert re.findall(r"^\*(\w+/\d+\.png)", good, flags=re.M)[0] == f"good/{Path(top_good['path']).name}"
    detected = md.split("## Correct detections per defect type")[1]
    for defect_type in ("broken_large", "contamination"):
        if any(i["defect_type"] == defect_type and i["verdict"] == "NG" for i in figures["images"]):
            assert f"**{defect_type}**" in detected


def test_what_if_table_has_the_calibrated_f1_optimal_and_zero_escape_rows(report):
    folder, figures, _ = report
    md = (folder / "report.md").read_text()
    assert f"| calibrated ({figures['strategy']}) | {figures['threshold']:.4f} | 0.5000 |" in md
    assert "| F1-optimal |" in md and "| highest with zero escapes |" in md
    for name in ("image_curves", "pixel_curves", "scores"):
        assert (folder / "img" / f"{name}.png").stat().st_size > 10_000


def test_pixel_check_agrees_with_the_binned_figures(report):
    _, figures, stdout = report
    check = figures["pixel_check"]
    assert check["images"] == 4 and "pixel check on 4 images" in stdout
    assert check["auroc_binned"] == pytest.approx(check["auroc_exact"], abs=1e-4)
    assert check["aupro_binned"] == pytest.approx(check["aupro_exact"], abs=1e-4)


def test_compare_writes_one_row_per_bundle_and_overlaid_curves(tiny_bundle, subset, tmp_path):
    other = shutil.copytree(tiny_bundle, tmp_path / "bottle-copy")
    result = edge_eval("--compare", tiny_bundle, other, "--data", subset, "--report", tmp_path / "c",
                       "--json", tmp_path / "c.json")
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "c.json").read_text())
    assert len(figures) == 2 and figures[0]["image_auroc"] == figures[1]["image_auroc"]  # same graph
    md = (tmp_path / "c" / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith(f"| {tiny_bundle.name} |")
            or line.startswith("| bottle-copy |")]
    assert len(rows) == 2
    assert (tmp_path / "c" / "img" / "compare_curves.png").stat().st_size > 10_000


def test_compare_needs_two_bundles_and_one_bundle_needs_no_compare(tiny_bundle, subset):
    for args in (("--compare", tiny_bundle), (tiny_bundle, tiny_bundle)):
        result = edge_eval(*args, "--data", subset)
        assert result.returncode == 2
        assert result.stderr.strip() == "edge-eval: error: give one BUNDLE, or --compare with two or more"


def test_without_matplotlib_the_report_is_refused_in_one_line_and_plain_eval_still_works(tiny_bundle, subset,
                                                                                         tmp_path):
    refused = edge_eval(tiny_bundle, "--data", subset, "--report", tmp_path / "r", block_matplotlib=True)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "edge-eval: error: --report needs matplotlib: pip install 'edge-inspect[report]'")
    assert not (tmp_path / "r").exists()
    plain = edge_eval(tiny_bundle, "--data", subset, "--json", tmp_path / "e.json", block_matplotlib=True)
    assert plain.returncode == 0, plain.stderr
    assert "overall" in plain.stdout and json.loads((tmp_path / "e.json").read_text())["n_images"] == 9
