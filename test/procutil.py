"""Proc: a child process a test started (test/conftest.py re-exports it)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import ClassVar


class Proc:
    """A child process we started (and only ours are ever signalled, by PID).

    Every Proc still running when the test session ends is stopped, so a failed
    assertion between start and stop never leaves a node behind.
    """

    live: ClassVar[list[Proc]] = []

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = open(log, "wb")
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **(env or {})},
                                      start_new_session=True)
        Proc.live.append(self)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def interrupt(self, timeout: float = 20.0) -> int:
        """Ctrl-C, as a terminal would send it; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.popen.poll() is None:
            # Ctrl-C first: a launcher stops its own children on it; then SIGKILL.
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        if self in Proc.live:
            Proc.live.remove(self)
