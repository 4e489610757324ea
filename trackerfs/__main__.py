"""`python -m trackerfs` runs the command line."""

from trackerfs.cli import main

raise SystemExit(main())
