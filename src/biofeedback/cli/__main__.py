"""``python -m biofeedback.cli``: the ``biofeedback`` command."""

import sys

from biofeedback.cli import main

sys.exit(main())
