import sys

from retail_common.auth.cli import main

sys.exit(main())
