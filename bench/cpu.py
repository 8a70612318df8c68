"""CPU time of process trees, read from Linux's /proc, to show who used the cores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Columns of the first line of /proc/stat that count busy time: user, nice, system,
# irq, softirq and steal. Idle and iowait are left out.
BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)
# Fields of /proc/PID/stat after the command name, counted from the state field.
PPID, UTIME, STIME, CUTIME, CSTIME = 1, 11, 12, 13, 14


@dataclass(frozen=True, slots=True)
class _Stat:
    ppid: int
    own_ticks: int
    reaped_children_ticks: int


def _read_stat(pid: int) -> _Stat | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces or parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return _Stat(
        ppid=int(fields[PPID]),
        own_ticks=int(fields[UTIME]) + int(fields[STIME]),
        reaped_children_ticks=int(fields[CUTIME]) + int(fields[CSTIME]),
    )


def _all_stats() -> dict[int, _Stat]:
    stats: dict[int, _Stat] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def tree_cpu_seconds(root: int) -> float | None:
    """Return user plus system CPU seconds of ``root`` and its descendants.

    Children that exited and were reaped count through their parent's cumulative
    fields, so the total only grows while ``root`` runs. Returns None without /proc.
    """
    if not PROC.is_dir():
        return None
    stats = _all_stats()
    if root not in stats:
        return None

    ticks = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        stat = stats[pid]
        ticks += stat.own_ticks + stat.reaped_children_ticks
        pending.extend(child for child, s in stats.items() if s.ppid == pid)
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """Return the CPU seconds this process has used in all its threads."""
    times = os.times()
    return times.user + times.system


def machine_cpu_seconds() -> float | None:
    """Return the busy CPU seconds of every core since boot, or None without /proc."""
    try:
        first_line = (PROC / "stat").read_text().splitlines()[0]
    except OSError:
        return None
    ticks = [int(value) for value in first_line.split()[1:]]
    return sum(ticks[column] for column in BUSY_COLUMNS) / os.sysconf("SC_CLK_TCK")
