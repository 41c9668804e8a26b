"""`python -m dataworkflows`: the `dataworkflows` command."""

import sys

from dataworkflows.entry import main

sys.exit(main())
