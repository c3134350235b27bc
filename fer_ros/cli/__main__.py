"""`python -m fer_ros.cli`: the same as the `fer-ros` command."""

import sys

from fer_ros.cli import main

sys.exit(main())
