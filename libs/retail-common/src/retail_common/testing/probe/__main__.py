from retail_common.service import run_service
from retail_common.testing.probe import SPEC

run_service(SPEC)
