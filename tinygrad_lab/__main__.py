import sys

from tinygrad_lab.cli import main

sys.exit(main())
