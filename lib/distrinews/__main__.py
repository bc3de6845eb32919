"""`python -m distrinews ...` and `torchrun ... -m distrinews ...`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
