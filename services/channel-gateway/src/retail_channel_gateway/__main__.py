"""`python -m retail_channel_gateway`: the channel gateway (run_service does the rest)."""

from __future__ import annotations

from retail_channel_gateway.service import SPEC
from retail_common.service import run_service


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
