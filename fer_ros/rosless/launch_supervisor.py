"""Start the processes a launch file planned and watch them, as ``ros2 launch`` does.

Child output is prefixed with ``[name]``. Ctrl-C is forwarded once to each child; those
still running after ``sigterm_timeout`` get SIGTERM, then SIGKILL (a second/third Ctrl-C
escalates at once). A required process (on_exit=Shutdown()) stops everything when it
exits; a respawning one is started again after its respawn_delay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from fer_ros.rosless.launch_core import LaunchError, ProcessSpec

POLL_S = 0.05
# Exit codes of a child that stopped because we asked it to (Ctrl-C or SIGTERM).
_STOPPED_CODES = (-signal.SIGINT, -signal.SIGTERM, 130, 143)


class Child:
    """One running process and the thread that copies its output, line by line."""

    def __init__(self, spec: ProcessSpec, lock: threading.Lock) -> None:
        self.spec = spec
        self.lock = lock
        self.reported = False  # its exit has been logged and acted on
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        try:
            # Own session: only we signal it (once), not the terminal's Ctrl-C as well.
            self.popen = subprocess.Popen(spec.cmd, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"cannot start {spec.name}: {exc}") from exc
        self.log(f"process started with pid [{self.popen.pid}]")
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def log(self, text: str) -> None:
        with self.lock:
            print(f"[INFO] [{self.spec.name}-{self.popen.pid}]: {text}", flush=True)

    def _copy(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self.lock:
                sys.stdout.write(f"[{self.spec.name}] {line}\n")
                sys.stdout.flush()

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass


class Supervisor:
    """Runs ``specs`` until all have exited; returns 1 when one failed (not on Ctrl-C)."""

    def __init__(self, specs: list[ProcessSpec], sigterm_timeout: float = 5.0) -> None:
        self.specs = specs
        self.sigterm_timeout = sigterm_timeout
        self.lock = threading.Lock()
        self.children: list[Child] = []
        self.interrupts = 0
        self.failed = False
        self.stopping_since: float | None = None
        self.escalated = 0  # 1 after SIGTERM, 2 after SIGKILL
        self.respawn_at: dict[int, float] = {}  # child index -> monotonic time

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        unique_names(self.specs)
        try:
            self.children = [Child(spec, self.lock) for spec in self.specs]
            while not self._step():
                time.sleep(POLL_S)
        finally:
            for child in self.children:
                child.signal(signal.SIGKILL)  # only reached with children left on errors
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for child in self.children:
            child.thread.join(1.0)
        return 1 if self.failed and not self.interrupts else 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self.interrupts += 1

    def _step(self) -> bool:
        """One look at the children; True when everything has exited for good."""
        if self.interrupts and self.stopping_since is None:
            self._say("user interrupted with ctrl-c (SIGINT)")
            self._begin_stop()
        now = time.monotonic()
        for index, child in enumerate(self.children):
            self._handle_exit(index, child, now)
        self._respawn_due(now)
        if not self.respawn_at and all(c.popen.poll() is not None for c in self.children):
            return True
        if self.stopping_since is not None:
            self._escalate(now - self.stopping_since)
        return False

    def _handle_exit(self, index: int, child: Child, now: float) -> None:
        code = child.popen.poll()
        if code is None or index in self.respawn_at or child.reported:
            return
        child.reported = True
        child.thread.join(1.0)  # its last lines first
        if code == 0 or (self.stopping_since is not None and code in _STOPPED_CODES):
            child.log("process has finished cleanly")
        else:
            child.log(f"process has died [exit code {code}, cmd '{' '.join(child.spec.cmd)}']")
            self.failed = True
        if self.stopping_since is not None:
            return
        if child.spec.required:
            self._say(f"required process {child.spec.name} exited: shutting down")
            self._begin_stop()
        elif child.spec.respawn:
            self.respawn_at[index] = now + child.spec.respawn_delay

    def _respawn_due(self, now: float) -> None:
        for index, when in list(self.respawn_at.items()):
            if self.stopping_since is not None:
                del self.respawn_at[index]
            elif now >= when:
                del self.respawn_at[index]
                self.children[index] = Child(self.children[index].spec, self.lock)

    def _escalate(self, waited: float) -> None:
        """SIGTERM after the timeout (or a second Ctrl-C), then SIGKILL (or a third)."""
        if self.escalated == 0 and (waited > self.sigterm_timeout or self.interrupts > 1):
            self._say("sending SIGTERM to the processes still running")
            self._signal_all(signal.SIGTERM)
            self.escalated = 1
        elif self.escalated == 1 and (waited > 2 * self.sigterm_timeout
                                      or self.interrupts > 2):
            self._say("sending SIGKILL to the processes still running")
            self._signal_all(signal.SIGKILL)
            self.escalated = 2

    def _begin_stop(self) -> None:
        self._signal_all(signal.SIGINT)
        self.stopping_since = time.monotonic()

    def _signal_all(self, sig: int) -> None:
        for child in self.children:
            child.signal(sig)

    def _say(self, text: str) -> None:
        with self.lock:
            print(f"[INFO] [launch]: {text}", flush=True)


def unique_names(specs: list[ProcessSpec]) -> None:
    """Two processes of one name become NAME and NAME-2, as in ros2 launch's log."""
    seen: dict[str, int] = {}
    for spec in specs:
        count = seen.get(spec.name, 0)
        seen[spec.name] = count + 1
        if count:
            spec.name = f"{spec.name}-{count + 1}"
