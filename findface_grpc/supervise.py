"""What makes `findface-cluster` a supervisor of what it started, not only a starter.

Three files in the cluster's data folder:
- `launcher.lock`, flock-ed for the launcher's whole life: a second launcher over the same folder refuses before
  it touches anything (tokens, Tarantool's WAL lock, ports), instead of half-starting against the live cluster.
- `launcher.pids`, every child's pid and start time, rewritten whenever a child starts: a launcher killed with -9
  leaves it behind, and the next one stops those children (when the parent-death signal did not) before starting.
- `status.json`, every child's state (running, restarting, given_up), restarts and last exit, for operators.

The restart policy: a child that exits, whatever the cause, is started again with the same command line, after a
back-off that doubles from RESTART_FIRST_S to RESTART_MAX_S while it keeps failing (reset once it has run for
STABLE_S). A child that fails GIVE_UP_AFTER times in a row, each within FAST_FAILURE_S of its start, is given up
on: a crash loop that fast is a configuration or environment fault that restarting will not fix, and the rest of
the cluster (searches flagged partial without a shard, for example) goes on serving.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from findface_grpc import launch

log = logging.getLogger(__name__)

LOCK_FILE = "launcher.lock"
PID_FILE = "launcher.pids"
STATUS_FILE = "status.json"

RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
FAST_FAILURE_S = 10.0
GIVE_UP_AFTER = 5
STABLE_S = 60.0

RUNNING, RESTARTING, GIVEN_UP = "running", "restarting", "given_up"


class AlreadyRunning(Exception):
    """Another launcher holds the data folder's lock; its pid (as it wrote it) is the message."""


def hold_lock(data: Path) -> int:
    """Lock `data` for this launcher's life; returns the descriptor to keep open (closing it, or dying, unlocks).

    The children never inherit it (subprocess closes descriptors by default), so a launcher killed with -9 does
    not leave the folder locked by its orphans."""
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyRunning(holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process for the life of
    the machine, whereas a pid alone may have been reused since the pid file was written."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields are counted after its closing ")".
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _is_ours(pid: int, start_time: int, argv0: str) -> bool:
    """Still the process we started: same start time, and its command line names the same program (compared by
    basename only: Tarantool rewrites its command line into a process title such as "tarantool storage.lua")."""
    if _start_time(pid) != start_time:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    first = cmdline.split(b"\0", 1)[0].split(b" ", 1)[0].decode(errors="replace")
    return os.path.basename(first) == os.path.basename(argv0)


def write_pids(data: Path, processes: list[launch.ManagedProcess]) -> None:
    entries = []
    for p in processes:
        if p.alive and (started := _start_time(p.proc.pid)) is not None:
            entries.append({"name": p.name, "pid": p.proc.pid, "start_time": started, "argv0": p.argv[0]})
    _write_json(data / PID_FILE, {"launcher": os.getpid(), "children": entries})


def remove_pids(data: Path) -> None:
    (data / PID_FILE).unlink(missing_ok=True)


def stop_previous(data: Path, timeout: float = 20.0) -> list[str]:
    """Stop the children a previous launcher of `data` left running (SIGTERM, then SIGKILL after `timeout`);
    returns their names. Call with the lock held: then no launcher is alive to own them."""
    try:
        entries = json.loads((data / PID_FILE).read_text())["children"]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring an unreadable %s", data / PID_FILE)
        return []
    ours = [e for e in entries if _is_ours(e["pid"], e["start_time"], e["argv0"])]
    for e in ours:
        log.warning("stopping %s (pid %d), left running by a launcher that did not stop it", e["name"], e["pid"])
        _signal(e["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_is_ours(e["pid"], e["start_time"], e["argv0"]) for e in ours):
        time.sleep(0.1)
    for e in ours:
        if _is_ours(e["pid"], e["start_time"], e["argv0"]):
            log.warning("%s (pid %d) did not stop in %.0f s; killing it", e["name"], e["pid"], timeout)
            _signal(e["pid"], signal.SIGKILL)
    remove_pids(data)
    return [e["name"] for e in ours]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _write_json(path: Path, value: object) -> None:
    """Whole or not at all: readers never see a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(tmp, path)


@dataclass
class _Child:
    proc: launch.ManagedProcess
    state: str = RUNNING
    failures_in_row: int = 0
    fast_failures_in_row: int = 0
    restarts: int = 0
    restart_at: float = 0.0
    last_exit: str = ""


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Restarts the cluster's children by the policy above. Call `tick` from the launcher's main thread only: a
    child's parent-death signal fires when the thread that started it ends, not only the process."""

    def __init__(self, data: Path, processes: list[launch.ManagedProcess]) -> None:
        self.data = data
        self.children = [_Child(p) for p in processes]
        self.write_status()

    def tick(self) -> None:
        now = time.monotonic()
        changed = False
        for child in self.children:
            proc = child.proc
            if child.state == RUNNING and not proc.alive:
                self._failed(child, now)
                changed = True
            elif child.state == RESTARTING and now >= child.restart_at:
                child.restarts += 1
                child.state = RUNNING
                changed = True
                try:
                    proc.start()
                except OSError as exc:  # its program gone, say: a failure like any other, not the launcher's end
                    log.error("%s could not be started again: %s", proc.name, exc)
                    proc.started_at = now
                    continue  # poll() of the old process still says it exited: the next tick counts a failure
                log.info("%s restarted (pid %d, restart %d)", proc.name, proc.proc.pid, child.restarts)
        if changed:
            write_pids(self.data, [c.proc for c in self.children])
            self.write_status()

    def _failed(self, child: _Child, now: float) -> None:
        proc = child.proc
        ran = now - proc.started_at
        child.last_exit = _exit_reason(proc.proc.returncode)
        child.failures_in_row = 1 if ran >= STABLE_S else child.failures_in_row + 1
        child.fast_failures_in_row = child.fast_failures_in_row + 1 if ran < FAST_FAILURE_S else 0
        if child.fast_failures_in_row >= GIVE_UP_AFTER:
            child.state = GIVEN_UP
            log.error("%s %s after %.1f s: %d failures in a row, each within %.0f s of its start; giving up on it "
                      "(the rest of the cluster goes on); see %s", proc.name, child.last_exit, ran,
                      child.fast_failures_in_row, FAST_FAILURE_S, proc.log_path)
            return
        delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** (child.failures_in_row - 1))
        child.state = RESTARTING
        child.restart_at = now + delay
        log.error("%s %s after %.1f s; restarting it in %.1f s; see %s",
                  proc.name, child.last_exit, ran, delay, proc.log_path)

    def write_status(self, launcher: str = RUNNING) -> None:
        _write_json(self.data / STATUS_FILE, {
            "launcher": {"pid": os.getpid(), "state": launcher, "updated": time.time()},
            "children": {
                c.proc.name: {"state": c.state if launcher == RUNNING else "stopped", "pid": c.proc.proc.pid if c.proc.alive else None,
                              "restarts": c.restarts, "last_exit": c.last_exit, "log": str(c.proc.log_path)}
                for c in self.children
            },
        })
