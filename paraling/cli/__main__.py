"""``python -m paraling.cli``: the ``paraling`` command."""

import sys

from paraling.cli.main import main

sys.exit(main())
