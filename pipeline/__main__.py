"""``python -m pipeline``: see pipeline/cli.py."""

import sys

from pipeline import cli

if __name__ == "__main__":
    sys.exit(cli.main())
