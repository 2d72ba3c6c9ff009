"""``python -m siamcl.cli``: the ``siamcl`` command."""

import sys

from siamcl.cli import main

sys.exit(main())
