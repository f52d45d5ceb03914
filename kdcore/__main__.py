"""Entry point for `python -m kdcore`."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning, so a run with two threads is not stalled by another
# process holding a core (measured in benchmarks/threads.py). Read when torch loads, so set before it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main

sys.exit(main())
