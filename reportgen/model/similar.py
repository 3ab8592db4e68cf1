"""`reportgen similar`: prior studies ranked by the contrastive image embedding."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from reportgen.data import CachedStudies, build_cache, discover_studies
from reportgen.io import load_study
from reportgen.model.generate import ReportGenerator


@torch.no_grad()
def most_similar(study: Path, library: Path, model_dir: Path | None, top: int = 5) -> list[dict]:
    """The `top` library studies closest to `study` (cosine similarity of image embeddings)."""
    generator = ReportGenerator(model_dir)
    image, present, _ = generator.tensors(load_study(study))
    query = generator.model.image_embedding(generator.model.encode(image, present))[0]
    sources = discover_studies(library)
    with tempfile.TemporaryDirectory(prefix="reportgen-similar-") as cache:
        images = CachedStudies(build_cache(sources, generator.model.input_cfg, Path(cache)))
        scores = generator.image_embeddings(images) @ query
    order = torch.argsort(scores, descending=True)[:top].tolist()
    return [
        {
            "rank": r + 1,
            "study_id": sources[i].study_id,
            "path": str(sources[i].path),
            "similarity": round(float(scores[i]), 4),
        }
        for r, i in enumerate(order)
    ]
