"""launch.ManagedProcess's log tail, which the launcher shows when a server exits at start: only what the last
start wrote (the log file keeps every run's lines; a gateway refusing its layout used to be shown 40 lines of
earlier runs' history with the reason at the very end)."""
from __future__ import annotations

import sys

from findface_grpc import launch


def run(proc: launch.ManagedProcess) -> None:
    proc.start()
    proc.proc.wait(30)


def test_the_tail_is_the_last_starts_output(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"an earlier run, line {i}\n" for i in range(100)))
    proc = launch.ManagedProcess("server", [sys.executable, "-c", "print('this run: cannot start')"], log)
    run(proc)
    assert proc.tail() == "this run: cannot start"
    proc.argv = [sys.executable, "-c", "print('\\n'.join(f'again {i}' for i in range(50)))"]
    run(proc)
    assert proc.tail(3) == "again 47\nagain 48\nagain 49" and "cannot start" not in proc.tail(100)


def test_a_log_truncated_since_the_start_is_read_whole(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("x" * 1000 + "\n")
    proc = launch.ManagedProcess("server", [sys.executable, "-c", "pass"], log)
    run(proc)
    log.write_text("after rotation\n")
    assert proc.tail() == "after rotation"
