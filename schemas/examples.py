"""One example message per topic: Kafka key, CloudEvents headers and data, as they travel.

The story is the help-center's own example (contract section 2): a yearly SIP trunk bought on
2021-04-01 for 120.00 SGD, terminated on 2021-04-17 (Singapore time), refunds 11 months, 110.00 SGD
as account credit; a second request for it is rejected. Then (section 8) finance refunds 20.00 SGD of
a 45.00 SGD charge to the same account, whose balance goes from 125.50 to 145.50, and a later request
for more than the 25.00 SGD left of it is rejected. The output ids are what the worker derives from
the reseller and the request's ce_id (`derived_id(reseller_id, ce_id, kind)` in worker/engine/outbox.py).

The AsyncAPI document (`refund-worker asyncapi`) shows these as its message examples, and
docs/contract.md shows the same messages; tests/unit/test_contract_examples.py checks that the two
agree and that every example passes the worker's own envelope parser and models, so neither can
drift from the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from schemas.example_message import Example
from schemas.examples_adjustments import ADJUSTMENT_EXAMPLES
from schemas.examples_money import MONEY_EXAMPLES
from schemas.examples_terminations import TERMINATION_EXAMPLES
from schemas.topics import Topic

EXAMPLES: Mapping[Topic, Example] = MappingProxyType(
    dict([*TERMINATION_EXAMPLES, *ADJUSTMENT_EXAMPLES, *MONEY_EXAMPLES])
)
"""The example of every topic the worker reads or writes, in the contract's order."""
