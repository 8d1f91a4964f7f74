"""Write the JSON Schema of every topic's data to schemas/json/<topic>.schema.json.

    python -m schemas.export           # rewrite the files from the models
    python -m schemas.export --check   # exit 1, naming the files, when they differ from the models

The files are for the teams on the other side of the topics; the models stay the source of truth, and
tests/unit/test_schema_files.py fails when the committed files fall behind them.

Every object in every schema says `additionalProperties: true`, whatever the model does inside the
worker. On outputs it is the contract's promise that fields may be added (v2 adds some): a consumer's
generated validator must let them through, while the worker's own output models still forbid extra
fields so that a typo fails before it is published. On inputs it is what the worker does: fields it
does not know are ignored (docs/producers-guide.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import JsonSchemaMode

from schemas.dataschema import schema_id
from schemas.events import DATA_MODELS, INPUT_MODELS
from schemas.topics import TOPICS, Topic

JSON_DIR = Path(__file__).resolve().parent / "json"
SUFFIX = ".schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
UNKNOWN_FIELDS = {
    "input": "Fields beyond these are ignored by the worker; types and required fields are checked strictly.",
    "output": "Fields may be added to this event, never renamed or removed: ignore the ones you do not know.",
}


def file_name(topic: Topic) -> str:
    return f"{topic}{SUFFIX}"


def schema_for(topic: Topic) -> dict[str, Any]:
    """The schema of `topic`'s data: what producers may send (inputs) or what the worker writes (outputs)."""
    spec = TOPICS[topic]
    data = data_schema(topic)
    return {
        "$schema": DIALECT,
        "$id": schema_id(topic),
        "$comment": data.pop("$comment"),
        "x-topic": str(topic),
        "x-cloudevents-type": str(spec.ce_type),
        "x-kafka-key": spec.key_field,
        **({"x-kafka-key-fallback": spec.key_fallback} if spec.key_fallback else {}),
        **data,
    }


def data_schema(topic: Topic, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The model's JSON Schema with every object open to unknown fields (see the module's docstring)."""
    mode: JsonSchemaMode = "validation" if topic in INPUT_MODELS else "serialization"
    schema = DATA_MODELS[topic].model_json_schema(mode=mode, ref_template=ref_template)
    _open_objects(schema)
    return {"$comment": UNKNOWN_FIELDS["input" if TOPICS[topic].is_input else "output"], **schema}


def _open_objects(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = True
        for child in node.values():
            _open_objects(child)
    elif isinstance(node, list):
        for child in node:
            _open_objects(child)


def render_all() -> dict[str, str]:
    """File name -> exact file content, for every topic; the same models always give the same bytes."""
    return {
        file_name(topic): json.dumps(schema_for(topic), indent=2, ensure_ascii=False) + "\n"
        for topic in DATA_MODELS
    }


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of the files that are missing, differ from the models, or belong to no topic any more."""
    expected = render_all()
    present = {path.name for path in directory.glob(f"*{SUFFIX}")}
    differing = [name for name, text in expected.items() if _read(directory / name) != text]
    return sorted({*differing, *(present - expected.keys())})


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    expected = render_all()
    for leftover in directory.glob(f"*{SUFFIX}"):
        if leftover.name not in expected:
            leftover.unlink()
    written = []
    for name, text in expected.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 when files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            sys.stderr.write(f"{JSON_DIR / name} differs from the models: run python -m schemas.export\n")
        return 1 if stale else 0
    for path in write_all():
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
