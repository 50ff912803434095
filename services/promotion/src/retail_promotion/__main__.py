"""`python -m retail_promotion`: the promotion service (run_service does the rest)."""

from __future__ import annotations

from retail_common.service import run_service
from retail_promotion.service import SPEC


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
