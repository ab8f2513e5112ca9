"""`python -m acl_dist ...` and `accelerate launch -m acl_dist train RECIPE`."""

import sys

from acl_dist.cli import main

if __name__ == "__main__":
    sys.exit(main())
