"""``python -m astralog.cli``: the ``astralog`` command (the tests and benchmarks start it so).

Guarded, so importing every module (as the fresh-clone check does) does not run the command."""

import sys

from astralog.cli import main

if __name__ == "__main__":
    sys.exit(main())
