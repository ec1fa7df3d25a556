import sys

from mihead.cli import main

sys.exit(main())
