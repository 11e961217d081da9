"""``python -m featdepth`` (also what ``torchrun -m featdepth`` runs)."""

import sys

from featdepth.cli import main

sys.exit(main())
