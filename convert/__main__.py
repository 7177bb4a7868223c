import os
import sys

# Before torch starts: OpenMP threads that spin while waiting fight each other (and everything else)
# on small shared machines; measured here, a 2-thread training step went from 4.3 s to 0.47 s under
# load with PASSIVE. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402

sys.exit(main())
