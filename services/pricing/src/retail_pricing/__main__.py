"""`python -m retail_pricing`: run the pricing service (configuration from the environment)."""

from retail_common.service import run_service
from retail_pricing.service import SPEC

run_service(SPEC)
