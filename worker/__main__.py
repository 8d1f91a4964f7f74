"""`python -m worker ...` is `refund-worker ...`."""

from worker.entrypoints.cli import main

main()
