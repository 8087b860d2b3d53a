"""Real servers on loopback for tests: a free port, and ``mlflow server`` over a sqlite store.

Usage::

    from tests.servers import MlflowServer, free_port

    with MlflowServer(tmp_path) as uri:          # started, healthy; killed on exit
        ...
    srv = MlflowServer(tmp_path); srv.start()    # or by hand: stop() kills it, start() brings it back
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 (one worker, its own session) over ``db`` (default ``root/server.db``) with
    artifacts in ``artifacts`` (default ``root/server-artifacts``), its log in ``root/server.log``. The port stays
    the same across :meth:`stop` / :meth:`start`, so a test can take the server away and bring it back."""

    def __init__(self, root: Path, db: Path | None = None, artifacts: Path | None = None, timeout: float = 120):
        self.root = Path(root)
        self.db = Path(db) if db else self.root / "server.db"
        self.artifacts = Path(artifacts) if artifacts else self.root / "server-artifacts"
        self.log = self.root / "server.log"
        self.timeout = timeout
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> str:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1", "--backend-store-uri", f"sqlite:///{self.db}",
                 "--artifacts-destination", str(self.artifacts)],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        if wait:
            self.wait_up()
        return self.uri

    def up(self) -> bool:
        import requests

        try:
            return requests.get(self.uri + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_up(self) -> None:
        end = time.monotonic() + self.timeout
        while not self.up():
            if self.proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"mlflow server did not come up: {self.log.read_text()[-1500:]}")
            time.sleep(0.3)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # its own session: the server and its worker
            self.proc.wait(timeout=30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(signal.SIGTERM)
