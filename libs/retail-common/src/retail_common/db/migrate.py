"""Entry point of `python -m retail_common.db.migrate --database-url URL --source NAME=DIR ... [--check]`.

Run it, don't import it: importing this module would shadow the `retail_common.db.migrate` function.
"""

from retail_common.db._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
