"""Shared fixtures: run the CLI in-process, write NIfTI files with chosen headers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
pytest_plugins = ["helpers.review_env"]  # `env`: a reward log on each backend
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _private_config_home(tmp_path_factory):
    """Reward-log keys (and any other per-user configuration) go to a throwaway folder,
    shared by the servers the tests start, never to the user's own ~/.config."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    os.environ.pop("REPORTGEN_LOG_KEY_FILE", None)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `reportgen ARGS...` in this process and return exit code, stdout, stderr."""
    from reportgen.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def assert_refused(result: CliResult, *fragments: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback."""
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])


def tree_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under a folder with its size and mtime, to prove nothing was written."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def save_nifti(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    dtype=None,
    slope=None,
    inter=None,
    nifti2=False,
) -> Path:
    affine = np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    image = cls(data if dtype is None else data.astype(dtype), affine)
    if slope is not None:
        image.header.set_slope_inter(slope, inter or 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def ball(
    shape=(40, 40, 20), centre=(20, 20, 10), radius=5.0, value=1000.0, background=100.0
) -> np.ndarray:
    grid = np.indices(shape).astype(np.float32)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    return np.where(dist <= radius, value, background).astype(np.float32)


@pytest.fixture
def data_dir() -> Path:
    return DATA
