"""`python -m reportgen.cli` runs the command line (as the `reportgen` script does)."""

from reportgen.cli import main

main()
