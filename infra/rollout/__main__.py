"""`python -m infra.rollout`: the same as the `rollout` console command."""

import sys

from infra.rollout.cli import main

sys.exit(main())
