"""``python -m crmlab`` is the ``crmlab`` command."""

import sys

from crmlab.cli import main

sys.exit(main())
