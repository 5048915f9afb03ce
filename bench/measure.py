"""What bench/compare.py reads while it drives a stack: /proc CPU and RSS, and the load generator."""
from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Iterable

from stacks import NODE_DIR, find_executable
from realtime.devcluster import Process, group_members, proc_stat

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """A run could not complete (a process failed, refused or hung)."""


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (children inherit it): thousands of sockets per process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with suppress(ValueError, OSError):  # raising the hard limit needs root
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
        return max(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pids(processes: Iterable[Process]) -> list[int]:
    """Every live PID of the processes' groups (gunicorn master + worker, nginx master + worker)."""
    return [pid for process in processes if process.pid for pid in group_members(process.pid)]


def cpu_seconds(pid_list: Iterable[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds; gone processes count 0."""
    total = 0
    for pid in pid_list:
        fields = proc_stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of /proc/PID/stat
    return total / TICKS


def rss_bytes(pid_list: Iterable[int]) -> int:
    """Resident set size of the processes, summed (/proc/PID/statm, second field)."""
    total = 0
    for pid in pid_list:
        with suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (all cores, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICKS


def snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each named group of PIDs, of the whole machine, and the clock."""
    return {**{name: cpu_seconds(members) for name, members in groups.items()},
            "machine": machine_busy_seconds(), "wall": time.monotonic()}


def settle(pid_list: list[int], timeout: float = 15.0, idle: float = 0.05) -> None:
    """Wait until the processes use under `idle` of a core, so a run's tail is not billed next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before, start = cpu_seconds(pid_list), time.monotonic()
        time.sleep(0.5)
        if (cpu_seconds(pid_list) - before) / (time.monotonic() - start) < idle:
            return


class LoadGen:
    """bench/node/loadgen.js as a child: JSON commands on its stdin, JSON answers from its stdout."""

    def __init__(self, config: Path, log_path: Path):
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen([find_executable("node"), str(NODE_DIR / "loadgen.js"),
                                         str(config)], cwd=NODE_DIR, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log,
                                        start_new_session=True)
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        """The generator's PID."""
        return self.process.pid

    def _read(self) -> None:
        """Forward each stdout line to the queue (None at EOF)."""
        for line in self.process.stdout:
            with suppress(ValueError):
                self.answers.put(json.loads(line))
        self.answers.put(None)

    def send(self, **command: Any) -> None:
        """Send one command."""
        try:
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            self.process.stdin.flush()
        except OSError as error:
            raise BenchError(f"load generator gone: {error}") from error

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next answer, which must be `event`."""
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"load generator: no {event!r} within {timeout:.0f}s") from None
        if answer is None:
            raise BenchError(f"load generator exited (code {self.process.poll()}); see {self.log.name}")
        if answer.get("event") != event:
            raise BenchError(f"load generator: expected {event!r}, got {answer}")
        return answer

    def close(self) -> None:
        """Ask it to disconnect everyone and exit; SIGKILL its process group if it lingers."""
        with suppress(BenchError):
            self.send(cmd="close")
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self.log.close()
