"""``python -m umask.train.simulator generate|validate ...``: the simulator's command line (`cli.main`)."""

from umask.train.simulator.cli import main

raise SystemExit(main())
