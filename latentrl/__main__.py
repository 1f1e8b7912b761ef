"""``python -m latentrl``: the ``latentrl`` command (what ``torchrun -m latentrl`` runs)."""

import sys

from latentrl.cli import main

sys.exit(main())
