"""Benchmark: report generation latency (bundled model unless --model).

Warm: one study drafted repeatedly in one process, constrained vs unconstrained
(greedy, no explanations), and with explanations. Cold: `reportgen generate` as a fresh
process, wall clock from start to exit, beside the import floor (a fresh process that
only imports what drafting cannot do without: torch, timm, transformers' GPT-2, nibabel,
TorchIO, SimpleITK, typer). Batch: `reportgen generate DIR --out OUT --no-explain` on 4
and on 20 breast phantoms; studies/s over the 20, and the steady rate from the difference.

python bench/generate_latency.py [--model DIR] [--repeats 10] [--out bench/results/generate_latency.json]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_io import write_result

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.generate import GenerateOptions, ReportGenerator
from reportgen.synth import SynthOptions, synth_dataset


def _timed(fn, repeats: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}


FLOOR = (
    "import os, torch, timm, nibabel, torchio, SimpleITK, typer; "
    "from transformers import GPT2LMHeadModel, LogitsProcessor; os._exit(0)"
)


def _wall(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(round(time.perf_counter() - start, 3))
    return times


def _batch(exe: str, folder: Path, n: int, model: Path | None) -> float:
    """Seconds for one `reportgen generate` over `n` breast phantoms (seed 2027)."""
    studies = folder / f"batch{n}"
    synth_dataset(
        studies, n, SynthOptions(protocol="low_resolution", domain="breast", seed=2027), workers=0
    )
    cmd = [exe, "generate", str(studies), "--no-explain", "--out", str(folder / f"out{n}")]
    return _wall(cmd + (["--model", str(model)] if model else []), 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "generate_latency.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reportgen-latency-") as tmp:
        folder = Path(tmp)
        synth_dataset(
            folder,
            1,
            SynthOptions(
                protocol="low_resolution", domain="breast", seed=2026, malignant_fraction=1.0
            ),
            workers=1,
        )
        study_dir = folder / read_manifest(folder / "manifest.jsonl")[0]["dir"]
        generator = ReportGenerator(args.model)
        study = load_study(study_dir)
        image, present, affine = generator.tensors(study)
        torch.set_num_threads(torch.get_num_threads())

        def run(**kw):
            return lambda: generator.draft_tensors(
                study.study_id, image, present, affine, GenerateOptions(**kw)
            )

        warm = {
            "constrained": _timed(run(explain=False), args.repeats),
            "unconstrained": _timed(run(explain=False, constrained=False), args.repeats),
            "constrained_with_explanations": _timed(run(explain=True), max(3, args.repeats // 3)),
            "end_to_end_with_loading": _timed(
                lambda: generator.draft(study, GenerateOptions(explain=False)), args.repeats
            ),
        }
        tokens = len(
            generator.draft_tensors(
                study.study_id, image, present, affine, GenerateOptions(explain=False)
            ).drafted.ids
        )
        cmd = [
            str(Path(sys.executable).parent / "reportgen"),
            "generate",
            str(study_dir),
            "--no-explain",
            "--out",
            str(folder / "r.json"),
        ]
        if args.model:
            cmd += ["--model", str(args.model)]
        cold = _wall(cmd, 5)
        floor = _wall([sys.executable, "-c", FLOOR], 5)
        torch_only = _wall([sys.executable, "-c", "import os, torch; os._exit(0)"], 5)
        small, large = (_batch(cmd[0], folder, n, args.model) for n in (4, 20))
    overhead = warm["constrained"]["median_s"] / warm["unconstrained"]["median_s"] - 1
    result = {
        "benchmark": "generate_latency",
        "model": str(args.model or "bundled"),
        "threads": torch.get_num_threads(),
        "tokens_generated": tokens,
        "warm": warm,
        "constraint_overhead": round(overhead, 4),
        "cold_start_s": {"median": statistics.median(cold), "runs": cold},
        "import_floor_s": {"median": statistics.median(floor), "runs": floor},
        "import_torch_s": {"median": statistics.median(torch_only), "runs": torch_only},
        "batch": {
            "studies_4_s": small,
            "studies_20_s": large,
            "studies_per_s_over_20": round(20 / large, 3),
            "steady_s_per_study": round((large - small) / 16, 3),
            "steady_studies_per_s": round(16 / (large - small), 3),
        },
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
