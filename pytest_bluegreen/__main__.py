import sys

from pytest_bluegreen.cli import main

sys.exit(main())
