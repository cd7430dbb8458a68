"""``python -m byzantium.runtime.distributed launch|serve|work ...`` (see :mod:`.cli`)."""

import sys

from .cli import main

sys.exit(main())
