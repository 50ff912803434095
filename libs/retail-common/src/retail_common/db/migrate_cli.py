"""Entry point of `python -m retail_common.db.migrate_cli --database-url URL --source NAME=DIR ... [--check]`.

Named apart from the `retail_common.db.migrate` function so importing it can never shadow that function.
"""

from retail_common.db._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
