"""A seeded generator of input messages for the fuzz tests: valid ones, and ones broken on purpose.

Every broken message is broken by construction (a mutation that no valid message survives), so a
test knows which must be dead-lettered without asking the code under test. `data_valid` says whether
the value alone is a valid data object (a message broken only in its headers still has valid data),
which is what `quote` judges.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from schemas.envelope import STRUCTURED_CONTENT_TYPE
from schemas.limits import (
    ATTRIBUTE_MAX_LENGTH,
    ID_MAX_LENGTH,
    KEY_MAX_BYTES,
    NAME_MAX_LENGTH,
    REASON_MAX_LENGTH,
    VALUE_MAX_BYTES,
)
from schemas.topics import INPUT_TOPICS, TOPICS, Topic

Header = tuple[str, bytes | None]
MEGABYTE = 1_000_000

ZONES = ["UTC", "Asia/Singapore", "America/New_York", "Europe/Berlin", "Pacific/Kiritimati", "Asia/Kolkata"]
CURRENCIES = {"SGD": 2, "JPY": 0, "KWD": 3, "USD": 2, "EUR": 2}
# Characters that have broken line splitting, escaping or storage somewhere before.
TRICKY = [
    "\u2028",
    "\u2029",
    "\x85",
    "é",
    "日本",
    "🙂",
    "\u202e",
    '"',
    "\\",
    "\t",
    "{",
    "'",
    "%s",
    "{reason}",
]

STRING_FIELDS: dict[Topic, dict[str, int]] = {
    Topic.TERMINATION_REQUESTED: {
        "subscription_id": ID_MAX_LENGTH,
        "account_id": ID_MAX_LENGTH,
        "reseller_id": ID_MAX_LENGTH,
        "requested_by": NAME_MAX_LENGTH,
        "reason": REASON_MAX_LENGTH,
        "product": NAME_MAX_LENGTH,
    },
    Topic.SUBSCRIPTION_EXPIRED: {
        name: ID_MAX_LENGTH for name in ("subscription_id", "account_id", "reseller_id")
    },
    Topic.SUBSCRIPTION_RENEWED: {
        name: ID_MAX_LENGTH for name in ("subscription_id", "account_id", "reseller_id")
    },
    Topic.BALANCE_ADJUSTMENT_REQUESTED: {
        "account_id": ID_MAX_LENGTH,
        "reseller_id": ID_MAX_LENGTH,
        "reason": REASON_MAX_LENGTH,
    },
    Topic.CREDIT_NOTE_ISSUED: {
        **{
            name: ID_MAX_LENGTH for name in ("credit_note_id", "subscription_id", "account_id", "reseller_id")
        },
        "number": NAME_MAX_LENGTH,
    },
    Topic.MONEY_REFUND_REQUESTED: {
        "account_id": ID_MAX_LENGTH,
        "reseller_id": ID_MAX_LENGTH,
        "reason": REASON_MAX_LENGTH,
    },
    Topic.PAYMENT_REFUND_SETTLED: {
        **{name: ID_MAX_LENGTH for name in ("instruction_id", "account_id", "reseller_id")},
        "detail": NAME_MAX_LENGTH,
    },
}
REQUIRED: dict[Topic, list[str]] = {
    Topic.TERMINATION_REQUESTED: [
        "subscription_id",
        "account_id",
        "reseller_id",
        "cycle_start",
        "cycle_months",
        "amount_paid",
        "currency",
        "allow_refund",
        "requested_at",
        "requested_by",
        "reason",
    ],
    Topic.SUBSCRIPTION_EXPIRED: ["subscription_id", "account_id", "reseller_id", "expired_at"],
    Topic.SUBSCRIPTION_RENEWED: ["subscription_id", "account_id", "reseller_id", "renewed_at"],
    Topic.BALANCE_ADJUSTMENT_REQUESTED: [
        "account_id",
        "reseller_id",
        "currency",
        "kind",
        "reason",
        "requested_at",
        "actor",
    ],
    # subscription_id may be null: a wrong type or a missing field of it could still be valid
    Topic.CREDIT_NOTE_ISSUED: [
        "credit_note_id",
        "account_id",
        "reseller_id",
        "amount",
        "issued_at",
        "number",
    ],
    Topic.MONEY_REFUND_REQUESTED: [
        "account_id",
        "reseller_id",
        "account_type",
        "method",
        "payment",
        "amount",
        "from_balance",
        "reason",
        "requested_at",
        "actor",
    ],
    Topic.PAYMENT_REFUND_SETTLED: ["instruction_id", "reseller_id", "account_id", "status", "settled_at"],
}
TIMESTAMP_FIELD = {
    Topic.TERMINATION_REQUESTED: "requested_at",
    Topic.SUBSCRIPTION_EXPIRED: "expired_at",
    Topic.SUBSCRIPTION_RENEWED: "renewed_at",
    Topic.BALANCE_ADJUSTMENT_REQUESTED: "requested_at",
    Topic.CREDIT_NOTE_ISSUED: "issued_at",
    Topic.MONEY_REFUND_REQUESTED: "requested_at",
    Topic.PAYMENT_REFUND_SETTLED: "settled_at",
}
BAD_TIMESTAMPS = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59Z",
    "2021-02-30T10:00:00Z",
    "2021-13-01T10:00:00Z",
    "2021-04-12T25:00:00Z",
    "2021-04-12T10:00:00",
    "2021-04-12T10:00:00+0800",
    "2021-04-12T10:00:00+24:00",
    "1618220000",
    "yesterday",
    "",
    "2021-04-12T10:00:00." + "1" * 100 + "Z",
]
BAD_DATES = ["2021-02-30", "0001-01-01", "9999-12-31", "2021-4-1", "20210401", "2021-04-01T00:00:00Z", ""]
BAD_ZONES = ["Mars/Olympus", "", "America", "../../etc/passwd", "UTC\x00", "utc ", "+08:00", "A" * 65]
BAD_CURRENCIES = ["XYZ", "usd", "XAU", "XXX", "SGDD", "", "S\x00D", 702]
BAD_AMOUNTS: list[object] = [
    float("nan"),
    float("inf"),
    "NaN",
    "Infinity",
    "1e400",
    "-1.00",
    "1.0001",
    "1,00",
    " 1.00",
    "1" * 65,
    120,
    120.5,
    None,
]
WRONG_TYPES: list[object] = [12, 1.5, True, None, [], {}, ["x"], {"a": 1}]


@dataclass(frozen=True)
class Message:
    topic: Topic
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    """One message, whether it must be accepted, and what is expected of it."""

    message: Message
    valid: bool
    data_valid: bool
    mutation: str
    ce_id: str | None
    data: dict[str, Any] | None
    """The data object of a valid message (what the worker must act on)."""


class Generator:
    """Cases from a seed: the same seed gives the same cases, so a failure can be replayed."""

    def __init__(self, seed: int, run: str = "") -> None:
        self.rng = random.Random(seed)
        self.run = run or f"{seed:x}"
        self._serial = 0

    # --- valid messages -------------------------------------------------------------------------

    def unique(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self.run}-{self._serial}"

    def identifier(self, prefix: str) -> str:
        text = self.unique(prefix)
        if self.rng.random() < 0.5:
            text += "".join(self.rng.choice(TRICKY) for _ in range(self.rng.randint(1, 4)))
        return text[:ID_MAX_LENGTH]

    def text(self, limit: int) -> str:
        words = [self.rng.choice(["moving", "price", "Umzug", "引っ越し", "🙂", "a\u2028b", "x\\y"])]
        words += [self.rng.choice(TRICKY) for _ in range(self.rng.randint(0, 3))]
        return ("why " + " ".join(words))[:limit]

    def timestamp(self, start: date) -> str:
        zone = timezone(timedelta(minutes=self.rng.randrange(-23 * 60, 23 * 60 + 1, 15)))
        moment = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(
            seconds=self.rng.randrange(0, 400 * 86400)
        )
        text = moment.astimezone(zone).isoformat()
        return text.replace("+00:00", "Z") if self.rng.random() < 0.5 else text

    def money(self, digits: int) -> str:
        units = self.rng.randint(0, 10**6)
        if digits == 0:
            return str(units)
        shown = self.rng.randint(0, digits)
        fraction = "".join(str(self.rng.randint(0, 9)) for _ in range(shown))
        return f"{units}.{fraction}" if fraction else str(units)

    def termination_data(self) -> dict[str, Any]:
        currency, digits = self.rng.choice(list(CURRENCIES.items()))
        start = date(2000, 1, 1) + timedelta(days=self.rng.randrange(0, 30 * 365))
        data: dict[str, Any] = {
            "subscription_id": self.identifier("sub"),
            "account_id": self.identifier("acc"),
            "reseller_id": self.identifier("res"),
            "cycle_start": start.isoformat(),
            "cycle_months": self.rng.choice([1, 3, 12, 24, 36, 1200]),
            "amount_paid": self.money(digits),
            "currency": currency,
            "allow_refund": self.rng.random() < 0.8,
            "requested_at": self.timestamp(start - timedelta(days=10)),
            "requested_by": self.text(NAME_MAX_LENGTH),
            "reason": self.text(REASON_MAX_LENGTH),
        }
        optional = {
            "product": self.rng.choice([None, "", self.text(NAME_MAX_LENGTH)]),
            "timezone": self.rng.choice([None, *ZONES]),
            "is_trial": self.rng.choice([None, False, True]),
            "credit_note": self.rng.choice(
                [None, {"credit_note_id": self.identifier("cn"), "amount": self.money(digits)}]
            ),
            "extra_field": {"producers": ["may", "add", "fields"]},
        }
        for name, value in optional.items():
            if self.rng.random() < 0.6:
                data[name] = value
        return data

    def expiry_data(self, topic: Topic) -> dict[str, Any]:
        start = date(2000, 1, 1) + timedelta(days=self.rng.randrange(0, 20 * 365))
        return {
            "subscription_id": self.identifier("sub"),
            "account_id": self.identifier("acc"),
            "reseller_id": self.identifier("res"),
            TIMESTAMP_FIELD[topic]: self.timestamp(start),
        }

    def adjustment_data(self) -> dict[str, Any]:
        currency, digits = self.rng.choice(list(CURRENCIES.items()))
        kind = self.rng.choice(["credit", "correction", "transaction_refund", "reversal"])
        reseller = self.identifier("res")
        sign = "-" if kind == "correction" and self.rng.random() < 0.5 else ""
        data: dict[str, Any] = {
            "account_id": self.identifier("acc"),
            "reseller_id": reseller,
            "currency": currency,
            "kind": kind,
            "amount": None if kind == "reversal" else sign + self.money(digits),
            "reason": self.text(REASON_MAX_LENGTH),
            "requested_at": self.timestamp(date(2021, 1, 1)),
            "actor": {
                "id": self.text(NAME_MAX_LENGTH),
                "reseller_id": self.rng.choice([reseller, self.identifier("res")]),
                "permissions": self.rng.choice([[], ["finance:manage"], ["*", "billing:read"]]),
            },
        }
        if kind == "transaction_refund":
            data["transaction"] = {"transaction_id": self.identifier("txn"), "amount": self.money(digits)}
        if kind == "reversal":
            data["reverses"] = self.identifier("adj")
        return data

    def credit_note_data(self) -> dict[str, Any]:
        currency, digits = self.rng.choice(list(CURRENCIES.items()))
        return {
            "credit_note_id": self.identifier("cn"),
            "reseller_id": self.identifier("res"),
            "account_id": self.identifier("acc"),
            "subscription_id": self.identifier("sub"),
            "amount": self.money(digits),
            "currency": currency,
            "issued_at": self.timestamp(date(2000, 1, 1) + timedelta(days=self.rng.randrange(0, 20 * 365))),
            "number": self.text(NAME_MAX_LENGTH),
        }

    def money_refund_data(self) -> dict[str, Any]:
        currency, digits = self.rng.choice(list(CURRENCIES.items()))
        reseller = self.identifier("res")
        return {
            "account_id": self.identifier("acc"),
            "reseller_id": reseller,
            "account_type": self.rng.choice(["retail", "corporate"]),
            "method": self.rng.choice(["charge_back", "cancel_payment"]),
            "payment": {
                "payment_id": self.identifier("pay"),
                "amount": self.money(digits),
                "currency": currency,
            },
            "amount": self.money(digits),
            "from_balance": self.rng.random() < 0.5,
            "reason": self.text(REASON_MAX_LENGTH),
            "requested_at": self.timestamp(date(2021, 1, 1)),
            "actor": {
                "id": self.text(NAME_MAX_LENGTH),
                "reseller_id": self.rng.choice([reseller, self.identifier("res")]),
                "permissions": self.rng.choice([[], ["finance:manage"], ["*", "billing:read"]]),
            },
        }

    def settlement_data(self) -> dict[str, Any]:
        """A settlement for an instruction nobody gave: well-formed, and a dead letter once judged
        (unknown_instruction), never poison."""
        return {
            "instruction_id": self.identifier("ins"),
            "reseller_id": self.identifier("res"),
            "account_id": self.identifier("acc"),
            "status": self.rng.choice(["succeeded", "failed"]),
            "detail": self.rng.choice([None, "", self.text(NAME_MAX_LENGTH)]),
            "settled_at": self.timestamp(date(2021, 1, 1)),
        }

    def data_for(self, topic: Topic) -> dict[str, Any]:
        if topic is Topic.TERMINATION_REQUESTED:
            return self.termination_data()
        if topic is Topic.BALANCE_ADJUSTMENT_REQUESTED:
            return self.adjustment_data()
        if topic is Topic.CREDIT_NOTE_ISSUED:
            return self.credit_note_data()
        if topic is Topic.MONEY_REFUND_REQUESTED:
            return self.money_refund_data()
        if topic is Topic.PAYMENT_REFUND_SETTLED:
            return self.settlement_data()
        return self.expiry_data(topic)

    def headers(self, topic: Topic, ce_id: str) -> list[Header]:
        headers: list[Header] = [
            ("ce_specversion", b"1.0"),
            ("ce_id", ce_id.encode()),
            ("ce_source", b"/fuzz/portal"),
            ("ce_type", str(TOPICS[topic].ce_type).encode()),
            ("ce_time", self.timestamp(date(2021, 1, 1)).encode()),
            ("content-type", b"application/json"),
        ]
        if self.rng.random() < 0.2:
            headers.append(("ce_traceparent", b"00-abc-def-01"))
        if self.rng.random() < 0.1:
            headers.append(("ce_id", ce_id.encode()))  # doubled with the same value: still one id
        if self.rng.random() < 0.2:
            headers.append(("x-not-utf8", b"\xff\xfe"))  # not an attribute: ignored
        self.rng.shuffle(headers)
        return headers

    def valid_case(self, topic: Topic | None = None) -> Case:
        topic = topic or self.rng.choice(list(INPUT_TOPICS))
        data, ce_id = self.data_for(topic), self.identifier("ce")
        key = str(data[TOPICS[topic].key_field]).encode()
        if self.rng.random() < 0.25:
            message = self._structured(topic, ce_id, data, key)
            return Case(message, True, False, "valid structured", ce_id, data)
        value = json.dumps(data, ensure_ascii=self.rng.random() < 0.5).encode()
        return Case(Message(topic, key, value, self.headers(topic, ce_id)), True, True, "valid", ce_id, data)

    def _structured(self, topic: Topic, ce_id: str, data: object, key: bytes | None) -> Message:
        event = {
            "specversion": "1.0",
            "id": ce_id,
            "source": "/fuzz/portal",
            "type": str(TOPICS[topic].ce_type),
            "time": "2021-04-12T10:00:00Z",
            "datacontenttype": "application/json",
            "data": data,
        }
        value = json.dumps(event, ensure_ascii=False).encode()
        return Message(topic, key, value, [("content-type", STRUCTURED_CONTENT_TYPE.encode())])

    # --- broken messages ------------------------------------------------------------------------

    def broken_case(self, topic: Topic | None = None) -> Case:
        topic = topic or self.rng.choice(list(INPUT_TOPICS))
        name, mutate = self.rng.choice(list(self._mutations().items()))
        base = self.valid_case(topic)
        while base.mutation != "valid":  # mutations start from a binary-mode message
            base = self.valid_case(topic)
        assert base.data is not None
        assert base.ce_id is not None
        message, data_valid = mutate(base.message, dict(base.data), base.ce_id)
        return Case(message, False, data_valid, name, base.ce_id, None)

    def cases(self, count: int, valid_share: float = 0.35) -> list[Case]:
        return [
            self.valid_case() if self.rng.random() < valid_share else self.broken_case() for _ in range(count)
        ]

    Mutation = Callable[[Message, dict[str, Any], str], tuple[Message, bool]]

    def _mutations(self) -> dict[str, Generator.Mutation]:
        return {
            "random bytes": self._random_bytes,
            "truncated json": self._truncated,
            "not an object": self._not_an_object,
            "wrong type": self._wrong_type,
            "missing field": self._missing_field,
            "string over its limit": self._long_string,
            "megabyte string": self._megabyte_string,
            "nul in a string": self._nul,
            "lone surrogate": self._lone_surrogate,
            "bad amount": self._bad_amount,
            "impossible timestamp": self._bad_timestamp,
            "impossible date": self._bad_date,
            "bad zone": self._bad_zone,
            "bad currency": self._bad_currency,
            "bad cycle": self._bad_cycle,
            "deep nesting": self._deep,
            "missing header": self._missing_header,
            "doubled header": self._doubled_header,
            "bad header": self._bad_header,
            "bad key": self._bad_key,
            "bad structured envelope": self._bad_structured,
        }

    def _with_data(self, message: Message, data: dict[str, Any]) -> Message:
        value = json.dumps(data, ensure_ascii=False, allow_nan=True).encode()
        return Message(message.topic, message.key, value, message.headers)

    def _random_bytes(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 300)))
        value = self.rng.choice([b"\xff" + noise, b"", None, b"\x00" * 10, noise.replace(b"{", b"")])
        return Message(message.topic, message.key, value, message.headers), False

    def _truncated(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        value = message.value or b""
        return Message(
            message.topic, message.key, value[: self.rng.randrange(len(value))], message.headers
        ), False

    def _not_an_object(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        value = self.rng.choice([b"[]", b'"text"', b"12", b"null", b"true", json.dumps([data]).encode()])
        return Message(message.topic, message.key, value, message.headers), False

    def _wrong_type(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        name = self.rng.choice(REQUIRED[message.topic])
        wrong = [v for v in WRONG_TYPES if type(v) is not type(data[name])]
        if name == "cycle_months":
            wrong = [v for v in wrong if not isinstance(v, int) or isinstance(v, bool)]
        data[name] = self.rng.choice([*wrong, str(data[name]) if not isinstance(data[name], str) else 1])
        return self._with_data(message, data), False

    def _missing_field(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        del data[self.rng.choice(REQUIRED[message.topic])]
        return self._with_data(message, data), False

    def _long_string(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        name, limit = self.rng.choice(list(STRING_FIELDS[message.topic].items()))
        data[name] = "x" * (limit + self.rng.choice([1, 2, 1000]))
        return self._with_data(message, data), False

    def _megabyte_string(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        name = self.rng.choice(list(STRING_FIELDS[message.topic]))
        piece = self.rng.choice(["a", "é", "://u:"])
        data[name] = piece * (self.rng.choice([MEGABYTE, 250_000]) // len(piece))
        return self._with_data(message, data), False

    def _nul(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        name = self.rng.choice(list(STRING_FIELDS[message.topic]))
        data[name] = f"a\x00{name}"
        return self._with_data(message, data), False

    def _lone_surrogate(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        name = self.rng.choice(list(STRING_FIELDS[message.topic]))
        data[name] = "SURROGATE"
        value = json.dumps(data).replace('"SURROGATE"', '"a\\ud800b"').encode()
        return Message(message.topic, message.key, value, message.headers), False

    def _bad_amount(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        if message.topic is not Topic.TERMINATION_REQUESTED:
            return self._bad_timestamp(message, data, ce_id)
        amount = self.rng.choice(BAD_AMOUNTS)
        if self.rng.random() < 0.3:
            data["credit_note"] = {"credit_note_id": "cn-1", "amount": amount}
        else:
            data["amount_paid"] = amount
        if amount in ("1e400",) and self.rng.random() < 0.5:  # a number too large for a float
            return self._raw(message, data, "amount_paid", "1e400"), False
        return self._with_data(message, data), False

    def _raw(self, message: Message, data: dict[str, Any], name: str, raw: str) -> Message:
        data[name] = "RAW"
        value = json.dumps(data).replace('"RAW"', raw).encode()
        return Message(message.topic, message.key, value, message.headers)

    def _bad_timestamp(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        data[TIMESTAMP_FIELD[message.topic]] = self.rng.choice(BAD_TIMESTAMPS)
        return self._with_data(message, data), False

    def _bad_date(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        if message.topic is not Topic.TERMINATION_REQUESTED:
            return self._bad_timestamp(message, data, ce_id)
        data["cycle_start"] = self.rng.choice(BAD_DATES)
        return self._with_data(message, data), False

    def _bad_zone(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        if message.topic is not Topic.TERMINATION_REQUESTED:
            return self._missing_field(message, data, ce_id)
        data["timezone"] = self.rng.choice(BAD_ZONES)
        return self._with_data(message, data), False

    def _bad_currency(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        if message.topic is not Topic.TERMINATION_REQUESTED:
            return self._wrong_type(message, data, ce_id)
        data["currency"] = self.rng.choice(BAD_CURRENCIES)
        return self._with_data(message, data), False

    def _bad_cycle(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        if message.topic is not Topic.TERMINATION_REQUESTED:
            return self._long_string(message, data, ce_id)
        data["cycle_months"] = self.rng.choice([0, -1, 1201, 10**30])
        if self.rng.random() < 0.3:
            return self._raw(message, data, "cycle_months", self.rng.choice(["1e400", "NaN", "12.0"])), False
        return self._with_data(message, data), False

    def _deep(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        depth = self.rng.choice([300, 5000])
        return self._raw(
            message, data, self.rng.choice(REQUIRED[message.topic]), "[" * depth + "]" * depth
        ), False

    def _headers_without(self, headers: list[Header], name: str) -> list[Header]:
        return [(key, value) for key, value in headers if key != name]

    def _missing_header(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        name = self.rng.choice(["ce_id", "ce_type", "ce_source", "ce_specversion"])
        return Message(
            message.topic, message.key, message.value, self._headers_without(message.headers, name)
        ), True

    def _doubled_header(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        name = self.rng.choice(["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time"])
        headers = [*message.headers, (name, b"another-" + name.encode())]
        return Message(message.topic, message.key, message.value, headers), True

    def _bad_header(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        other = next(t for t in INPUT_TOPICS if t is not message.topic)
        name, value = self.rng.choice(
            [
                ("ce_type", str(TOPICS[other].ce_type).encode()),
                ("ce_specversion", b"0.3"),
                ("ce_id", b""),
                ("ce_id", b"c" * (ID_MAX_LENGTH + 1)),
                ("ce_id", b"ce\x00nul"),
                ("ce_id", b"\xff\xfe"),
                ("ce_id", None),
                ("ce_source", b"s" * (ATTRIBUTE_MAX_LENGTH + 1)),
                ("ce_time", b"yesterday"),
                ("ce_time", b"0001-01-01T00:00:00Z"),
                ("ce_time", b"9999-12-31T23:59:59-23:59"),
                ("content-type", b"text/plain"),
                ("content-type", b"application/xml"),
                ("content-type", b"application/cloudevents-batch+json"),
                ("ce_BadName!", b"x"),
            ]
        )
        headers = [*self._headers_without(message.headers, name), (name, value)]
        return Message(message.topic, message.key, message.value, headers), True

    def _bad_key(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        key = self.rng.choice([b"\xff\xfe", b"k" * (KEY_MAX_BYTES + 1)])
        return Message(message.topic, key, message.value, message.headers), True

    def _bad_structured(self, message: Message, data: dict[str, Any], ce_id: str) -> tuple[Message, bool]:
        topic = message.topic
        good = self._structured(topic, ce_id, data, message.key)
        event = json.loads(good.value or b"")
        choice = self.rng.randrange(9)
        if choice == 0:
            event["data"] = json.dumps(data)
        elif choice == 1:
            event["data_base64"] = "e30="
            del event["data"]
        elif choice == 2:
            del event["id"]
        elif choice == 3:
            event["specversion"] = "0.3"
        elif choice == 4:
            event["datacontenttype"] = "text/xml"
        elif choice == 5:
            event["type"] = "something.else.v1"
        elif choice == 6:
            event["id"] = 12
        elif choice == 7:
            deep = "[" * 5000 + "]" * 5000
            value = json.dumps(event).replace('"specversion"', f'"x": {deep}, "specversion"', 1).encode()
            return Message(topic, message.key, value, good.headers), False
        else:
            event["data"]["account_id"] = "x" * (ID_MAX_LENGTH + 1)
        return Message(topic, message.key, json.dumps(event).encode(), good.headers), False


def oversize_value() -> bytes:
    """A value larger than any input may be: refused before it is parsed."""
    return b'{"reason": "' + b"x" * VALUE_MAX_BYTES + b'"}'
