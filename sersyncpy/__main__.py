"""`python -m sersyncpy` runs the command line."""

from sersyncpy.cli import main

raise SystemExit(main())
