"""`python -m resnetkit.cli`: the `resnetkit` command."""

import sys

from .commands import main

sys.exit(main())
