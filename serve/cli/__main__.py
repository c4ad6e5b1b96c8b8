"""``python -m serve.cli``: the same as the ``mnist-predict`` command."""

import sys

from serve.cli.command import main

sys.exit(main())
