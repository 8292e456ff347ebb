"""A real `vidgate serve` process for tests that must crash or restart the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """`vidgate serve` in ``workdir`` (embedded default unless ``config`` is a path)."""

    def __init__(
        self, workdir: Path, config: Path | None = None, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.args = args  # extra `vidgate serve` arguments
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        # Run in the child before exec (e.g. to lower a resource limit the gateway must cope with).
        self.preexec: Callable[[], None] | None = None

    def start(self, **env: str) -> None:
        environment = {k: v for k, v in os.environ.items() if k not in ("VIDGATE_CONFIG", "VIDGATE_FAILPOINTS")}
        environment.update(self.extra_env)
        environment.update(env)
        command = [sys.executable, "-m", "vidgate.cli", "serve", "--port", str(self.port)]
        if self.config is not None:
            command += ["--config", str(self.config)]
        command += self.args
        # Logs go to a file in the work dir: they are what explains a failed test.
        self.log = open(self.workdir / "gateway.log", "a")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            preexec_fn=self.preexec,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if "serving on" in line:
                break
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not start: {''.join(self.output)}")

    def _release(self) -> None:
        """Close our ends of the ended process's pipe and log file."""
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        log = getattr(self, "log", None)
        if log is not None:
            log.close()

    def wait_dead(self, timeout: float = 30) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._release()
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._release()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._release()

    def children(self) -> list[int]:
        """Pids of the processes `vidgate serve` started (API processes, the worker), not
        multiprocessing's own helper (its resource tracker)."""
        assert self.proc is not None
        found = []
        for pid in children_of(self.proc.pid):
            try:
                cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                found.append(pid)
        return found

    @property
    def dev_token(self) -> str:
        lines = [line.strip() for line in self.output]
        index = next(i for i, line in enumerate(lines) if "created a development token" in line)
        return lines[index + 1]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces: the fields after its closing ')' are fixed.
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def create_token(config: Path, name: str = "client", quota: float | None = None) -> str:
    command = [sys.executable, "-m", "vidgate.cli", "tokens", "create", "--config", str(config), "--name", name]
    if quota is not None:
        command += ["--quota", str(quota)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip().splitlines()[-1]
