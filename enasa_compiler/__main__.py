"""``python -m enasa_compiler``: the same program as the ``enasa`` command."""

from __future__ import annotations

import sys

from enasa_compiler.cli import main

sys.exit(main())
