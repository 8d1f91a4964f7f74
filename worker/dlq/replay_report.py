"""`dlq replay`'s output: the dry run's table of what would go where, and the summary lines (what
was sent, the poison left behind and named, what was skipped).

Everything read from Kafka goes in as `Text`, never as markup: a key like `[bold]` stays a key.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from worker.dlq.replay import ReplayOutcome
from worker.dlq.text import ce_id_text, key_text, plural


def planned_table(outcome: ReplayOutcome) -> Table:
    table = Table(title=Text("dry run: would replay"), title_justify="left")
    table.add_column("dead letter", overflow="fold")
    table.add_column("to", overflow="fold")
    table.add_column("key", overflow="fold")
    table.add_column("ce_id", overflow="fold")
    for letter, record in outcome.planned:
        table.add_row(
            Text(letter.location), Text(record.topic), Text(key_text(record.key)), Text(ce_id_text(record))
        )
    return table


def summary_lines(topic: str, outcome: ReplayOutcome, *, dry_run: bool, scanned: int) -> list[str]:
    targets = ", ".join(f"{count} to {target}" for target, count in sorted(outcome.targets.items()))
    replayable = sum(outcome.targets.values())
    selected = plural(outcome.selected, "selected dead letter")
    if dry_run:
        head = f"dry run: {replayable} of {selected} would be replayed"
        tail = "; nothing was sent"
    else:
        head = f"replayed {outcome.sent} of {selected}"
        tail = ""
    where = f" ({targets})" if targets else ""
    lines = [f"{head} from {topic}{where}, {scanned} scanned{tail}"]
    lines += _poison_lines(topic, outcome, dry_run=dry_run)
    lines += [f"skipped {letter.location}: {why}" for letter, why in outcome.skipped]
    return lines


def _poison_lines(topic: str, outcome: ReplayOutcome, *, dry_run: bool) -> list[str]:
    total = sum(outcome.poison.values())
    if not total:
        return []
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(outcome.poison.items()))
    lines = [
        f"{'would leave' if dry_run else 'left'} {plural(total, 'poison dead letter')} unsent ({reasons}): "
        "a replay would only dead-letter poison again; --include-poison sends it anyway"
    ]
    lines += [f"poison {where}: {reason}" for where, reason in outcome.poison_named]
    if (unnamed := total - len(outcome.poison_named)) > 0:
        lines.append(f"and {unnamed} more poison (dlq list {topic} --reason REASON lists them)")
    return lines
