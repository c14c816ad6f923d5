"""Peak resident memory of a whole process tree, sampled, and of one child, from the kernel.

    with TreeRSS(pid) as tree:      # samples every 0.1 s in a thread
        ...
    tree.peak_bytes, tree.peak_processes, tree.samples

The sum of RSS over the process and all its descendants at each sample (pids that appear later,
e.g. a Dagster step subprocess or a JVM, are picked up at the next sample). On Linux it reads /proc
directly (the parent map from /proc/*/stat, RSS from /proc/<pid>/statm), so it needs no package;
elsewhere it uses psutil when that is installed. Caveats: pages shared between processes (fork,
shared libraries, mmap'ed files) count once per process, so the sum is an upper bound of what the
tree really holds; and a spike shorter than the interval can be missed — `wait4_rusage` gives the
kernel's exact ru_maxrss of the largest single process to complement it.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PROC = Path("/proc")


def _linux_tree_rss(root: int) -> tuple[int, int]:
    parents: dict[int, list[int]] = {}
    for d in os.scandir(_PROC):
        if not d.name.isdigit():
            continue
        try:
            stat = (_PROC / d.name / "stat").read_bytes()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'
        ppid = int(stat[stat.rindex(b")") + 2:].split(b" ", 2)[1])
        parents.setdefault(ppid, []).append(int(d.name))
    total = count = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            resident = int((_PROC / str(pid) / "statm").read_bytes().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited between the scan and the read
        total += resident * PAGE
        count += 1
        stack.extend(parents.get(pid, ()))
    return total, count


def _psutil_tree_rss(root: int) -> tuple[int, int]:
    import psutil

    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total = count = 0
    for p in procs:
        try:
            total += p.memory_info().rss
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total, count


def tree_rss(root: int) -> tuple[int, int]:
    """(sum of RSS in bytes, number of processes) of `root` and its descendants, now."""
    if sys.platform.startswith("linux") and _PROC.is_dir():
        return _linux_tree_rss(root)
    return _psutil_tree_rss(root)


class TreeRSS:
    """Samples `tree_rss(pid)` every `interval` seconds until the context exits."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self.peak_processes = 0  # processes alive at the peak
        self.max_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total, count = tree_rss(self.pid)
            if count:
                self.samples += 1
                self.max_processes = max(self.max_processes, count)
                if total > self.peak_bytes:
                    self.peak_bytes, self.peak_processes = total, count
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30


def wait4_rusage(pid: int) -> tuple[int, float, float]:
    """Reap `pid`: (exit code, its ru_maxrss in GiB, CPU seconds). ru_maxrss is the largest
    resident set of that process or of any descendant it waited for (Linux: KiB); the CPU seconds
    (user + system) add up the process and the descendants it waited for."""
    _, status, usage = os.wait4(pid, 0)
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return (os.waitstatus_to_exitcode(status), usage.ru_maxrss * scale / 2**30,
            usage.ru_utime + usage.ru_stime)
