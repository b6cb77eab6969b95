"""``python -m study.device``: see study.device.cli."""
import sys

from study.device.cli import main

sys.exit(main())
