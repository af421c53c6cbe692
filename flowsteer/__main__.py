import sys

from flowsteer.cli import main

sys.exit(main())
