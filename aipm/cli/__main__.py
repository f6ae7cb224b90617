"""`python -m aipm.cli` = the `aipm` console script."""

import sys

from aipm.cli import main

sys.exit(main())
