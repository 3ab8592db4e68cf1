"""Report templates are data: one YAML file per template in this folder.

Adding a template is adding a file (and, if it needs new terms, a concept file under
`ontology/data/concepts/`); no code changes. Extra folders can be searched by setting
REPORTGEN_TEMPLATES to a list of folders separated by os.pathsep.
"""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent
