"""reportgen: structured radiology reports for multiparametric MRI.

Research software. The bundled demo model is trained on synthetic phantoms only and
is not for clinical use.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reportgen")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

NOT_FOR_CLINICAL_USE = (
    "Research software: the bundled model is trained on synthetic phantoms and is "
    "not for clinical use."
)
