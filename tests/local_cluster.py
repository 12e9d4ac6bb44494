"""A Ray cluster of separate nodes on this machine, started with ``ray start`` as a user would.

Each node is one ``ray start --block`` process in its own session (process group), with its
own temporary folder, so a test can kill one node (the whole group, as when a machine is lost)
and tear everything down without touching any other Ray on the machine (no ``ray stop``,
which stops every Ray process of the machine). Ray gives every node this machine's address.

Token authentication is on, with a token of the cluster's own (``RAY_AUTH_TOKEN_PATH``):
:attr:`LocalCluster.env` is the environment a node, a driver or a CLI subprocess needs to join.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["LocalCluster"]

#: ``ray`` run by this interpreter, whatever is on PATH.
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Nodes started by ``ray start --block``; :meth:`stop` kills every process they started."""

    def __init__(self) -> None:
        # Short: Ray's socket paths under a node's temporary folder may not exceed 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="sepl-ray-", dir="/tmp"))
        token = self.root / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0",
                        SEPL_TREE_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
        self.nodes: dict[str, subprocess.Popen] = {}

    def start_node(self, name: str, num_cpus: int, env: dict[str, str] | None = None,
                   timeout: float = 120.0) -> None:
        """Start node ``name`` (the first one is the head) and wait until it says it runs."""
        args = [f"--num-cpus={num_cpus}", f"--temp-dir={self.root / name}", f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats", "--block"]
        if not self.nodes:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false",
                     f"--ray-client-server-port={_free_port()}"]
        else:
            args += [f"--address={self.address}"]
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            self.nodes[name] = subprocess.Popen([*RAY, "start", *args], env={**self.env, **(env or {})}, stdout=out,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in log.read_bytes():
            if self.nodes[name].poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray node {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill_node(self, name: str) -> None:
        """SIGKILL every process of node ``name`` at once, as when its machine is lost."""
        process = self.nodes.pop(name)
        for pid in self._group(process):
            _kill(pid)
        process.wait()

    def stop(self) -> None:
        """Kill every node (workers first), then whatever is left that names this cluster's folders."""
        for name in list(reversed(self.nodes)):
            self.kill_node(name)
        for pid in self._stragglers():
            _kill(pid)
        shutil.rmtree(self.root, ignore_errors=True)

    def _group(self, process: subprocess.Popen) -> list[int]:
        """The processes of ``process``'s session: it and every process Ray started for it."""
        try:
            sid = os.getsid(process.pid)
        except ProcessLookupError:
            return []
        return [pid for pid in _pids() if _sid(pid) == sid]

    def _stragglers(self) -> list[int]:
        marks = (str(self.root).encode(), f"127.0.0.1:{self.port}".encode())
        return [pid for pid in _pids() if pid != os.getpid() and any(m in _cmdline(pid) for m in marks)]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
