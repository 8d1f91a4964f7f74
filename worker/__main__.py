"""`python -m worker ...` is `refund-worker ...`."""

from worker.cli import main

main()
