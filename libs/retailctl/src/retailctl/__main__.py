import sys

from retailctl.cli import main

sys.exit(main())
