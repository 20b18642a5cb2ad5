import sys

from week1.cli import main

sys.exit(main())
