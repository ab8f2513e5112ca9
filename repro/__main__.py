"""``python -m repro PART ...`` (what ``acl-dist repro`` runs)."""

import sys

from repro import main

sys.exit(main())
