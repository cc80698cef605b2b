"""``python -m umask ...``: the ``umask`` command line (umask/cli.py) under a name no shell builtin shadows.

    python -m umask train umask --help
"""

from umask.cli import main

raise SystemExit(main())
