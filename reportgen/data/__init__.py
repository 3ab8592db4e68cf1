"""Studies as the models see them: discovered on disk, read into the model's grid, cached.

Every road from a study on disk to a tensor goes through here (training, pretraining,
evaluation, `generate`), so they all see the same input. Nothing here knows about a
model's weights or a report's wording.
"""

from reportgen.data.adapter import GridConfig, study_arrays
from reportgen.data.cache import CachedStudies, build_cache
from reportgen.data.sources import StudySource, discover_studies, read_manifest

__all__ = [
    "CachedStudies",
    "GridConfig",
    "StudySource",
    "build_cache",
    "discover_studies",
    "read_manifest",
    "study_arrays",
]
