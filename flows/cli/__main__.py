"""``python -m flows.cli``: the ``backlake`` command."""

import sys

from flows.cli import main

sys.exit(main())
