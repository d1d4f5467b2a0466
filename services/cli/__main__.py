"""``python -m services.cli``: the ``facestream`` command."""

import sys

from services.cli import main

sys.exit(main())
