"""`python -m benchmarks <sub-command>`: see benchmarks/cli.py."""

from benchmarks.cli import main

raise SystemExit(main())
