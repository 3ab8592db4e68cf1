"""Run `reportgen review` as a real server process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReviewServer:
    def __init__(
        self, db: str, studies: Path | None, log_file: Path, extra_args: tuple[str, ...] = ()
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "reportgen.cli",
            "review",
            "--db",
            db,
            "--port",
            str(self.port),
        ]
        if studies is not None:
            args += ["--studies", str(studies)]
        args += list(extra_args)
        self._log = log_file.open("w")
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"review server exited: {log_file.read_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/login", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        self.kill()
        raise RuntimeError("review server did not start in 90 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self._log.close()
