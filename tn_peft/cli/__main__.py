"""``python -m tn_peft.cli``: the ``tn-peft`` command."""

import sys

from . import main

sys.exit(main())
