"""CPU time and peak memory per kind of process, read from Linux /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Process:
    parent: int
    command: str
    cpu_seconds: float


def _processes() -> dict[int, _Process]:
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        found[int(entry)] = _Process(int(fields[1]), command, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def cpu_seconds(database: str) -> dict[str, float]:
    """CPU seconds used so far by kind of process (Linux /proc): this process (the load generator)
    and its children (worker, embedded broker), and the PostgreSQL backends serving `database`
    (their title names it). Other engineers' processes on a shared machine are left out."""
    processes = _processes()
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, process in processes.items():
            if pid not in mine and process.parent in mine:
                mine.add(pid)
                grew = True
    used: dict[str, float] = {}
    for pid, process in processes.items():
        if pid == os.getpid():
            kind = "load generator"
        elif "postgres" in process.command and f" {database} " in f"{process.command} ":
            kind = "postgresql"
        elif pid in mine:
            kind = _kind(process.command)
        else:
            continue
        used[kind] = used.get(kind, 0.0) + process.cpu_seconds
    return used


def _kind(command: str) -> str:
    if "-m worker run" in command:
        return "worker"
    if "postgres" in command:
        return "postgresql"
    if "tansu" in command:
        return "broker"
    return "other children"


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        kind: after[kind] - before.get(kind, 0.0) for kind in after if after[kind] > before.get(kind, 0.0)
    }


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process has had."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
