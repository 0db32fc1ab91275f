"""A throwaway PostgreSQL cluster on a loopback port: for trying multi-worker searches on one
machine, for the tests and for the benchmarks (``LocalPostgres`` stops and restarts it, for the
fault tests).

As root, ``initdb`` and ``pg_ctl`` must run as the ``postgres`` user (``runuser``), in a folder
that user owns; as any other user they run directly. Debian keeps the binaries off ``PATH``
(``/usr/lib/postgresql/VERSION/bin``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from slimkit.errors import MissingDependencyError


def postgres_bin() -> str | None:
    """The folder with initdb/pg_ctl, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """A throwaway cluster that can be stopped and started again on the same port (fault tests).

    Args:
        folder: where the cluster lives (owned by ``postgres`` when running as root).
        bindir: the folder with ``initdb`` and ``pg_ctl``.
    """

    def __init__(self, folder: str, bindir: str) -> None:
        self.folder = folder
        self.bindir = bindir
        self.data = os.path.join(folder, "data")
        self.port = _free_port()
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        """The database URL (user ``postgres``, no password: the cluster trusts loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/slimkit"

    def _run(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.prefix, *args], check=check, capture_output=True, cwd=self.folder)

    def create(self) -> None:
        """initdb, start, and create database ``slimkit``."""
        initdb = f"{self.bindir}/initdb"
        self._run(initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self._run(
            f"{self.bindir}/createdb",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "slimkit",
        )

    def start(self) -> None:
        """Start the server (and wait until it accepts connections)."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = f"{self.folder}/log"
        self._run(f"{self.bindir}/pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: like a crash; ``fast``: clients are disconnected)."""
        self._run(f"{self.bindir}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)


@contextmanager
def throwaway_server() -> Iterator[LocalPostgres]:
    """A started :class:`LocalPostgres` with database ``slimkit``; stopped and deleted after."""
    bindir = postgres_bin()
    if bindir is None:
        raise MissingDependencyError(
            "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        )
    folder = tempfile.mkdtemp(prefix="slimkit-pg-")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = LocalPostgres(folder, bindir)
    try:
        server.create()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a cluster, create database ``slimkit``, yield its URL; stop and delete it after."""
    with throwaway_server() as server:
        yield server.url
