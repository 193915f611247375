"""``python -m enasa_compiler.cli``: the ``enasa`` command."""

import sys

from enasa_compiler.cli import main

sys.exit(main())
