"""CPU seconds of process trees from Linux /proc, for the benchmarks' cost-per-request figures.

A tree's CPU is the sum, over the root and every live descendant, of utime + stime + cutime +
cstime (fields 14-17 of /proc/PID/stat): a child that exited and was reaped inside the tree (a
PostgreSQL backend, an nginx worker) is then counted once, in its parent's cutime. A root that has
died (a replica killed mid-run) keeps the last value read: :meth:`CpuMeter.sample` right before
killing it loses nothing but the CPU it spent between that read and the kill.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, own + reaped children's CPU seconds) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ... utime stime cutime cstime
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / CLK_TCK


def all_stats() -> dict[int, tuple[int, float]]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                out[int(entry.name)] = stat
    return out


def tree_cpu(root: int, stats: dict[int, tuple[int, float]]) -> float | None:
    """CPU seconds of ``root`` and its live descendants (None when ``root`` is gone)."""
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def machine_times() -> dict[str, float]:
    """Seconds since boot the machine's cores spent, all cores together (the first line of /proc/stat)."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:1 + len(names)]
    return {name: int(v) / CLK_TCK for name, v in zip(names, values)}


def machine_share(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Share of the cores' time between two :func:`machine_times`: busy (any process or the kernel),
    iowait (idle with I/O outstanding), idle, steal (taken by the hypervisor)."""
    delta = {k: after[k] - before[k] for k in before}
    total = sum(delta.values()) or 1.0
    busy = delta["user"] + delta["nice"] + delta["system"] + delta["irq"] + delta["softirq"]
    return {"busy": busy / total, "iowait": delta["iowait"] / total, "idle": delta["idle"] / total,
            "steal": delta["steal"] / total}


class CpuMeter:
    """CPU per named process tree between :meth:`start` and the last :meth:`sample`.

    ``roots`` maps a label (``"replica 0"``) to a root pid and a class (``"replica"``); figures are
    reported per label and summed per class.
    """

    def __init__(self, roots: dict[str, tuple[int, str]]) -> None:
        self.roots = roots
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.machine: tuple[dict, dict] | None = None

    def start(self) -> None:
        self.first = {}
        self.sample()
        self.first = dict(self.last)
        self.machine = (machine_times(), machine_times())

    def stop(self) -> None:
        """The last sample of the window."""
        self.sample()
        if self.machine is not None:
            self.machine = (self.machine[0], machine_times())

    def machine_share(self) -> dict[str, float]:
        return machine_share(*self.machine) if self.machine else {}

    def sample(self) -> None:
        stats = all_stats()
        for label, (pid, _) in self.roots.items():
            value = tree_cpu(pid, stats)
            if value is not None:
                self.last[label] = value

    def per_label(self) -> dict[str, float]:
        return {label: self.last.get(label, 0.0) - self.first.get(label, 0.0) for label in self.roots}

    def per_class(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, seconds in self.per_label().items():
            cls = self.roots[label][1]
            out[cls] = out.get(cls, 0.0) + seconds
        return out
