"""Entry point for `python -m kdcore`."""

import sys

from .cli import main

sys.exit(main())
