import sys

from hoi.cli import main

sys.exit(main())
