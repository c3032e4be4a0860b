"""A throw-away PostgreSQL cluster for service tests: initdb + pg_ctl on 127.0.0.1, stopped and started at will
(outage tests), removed afterwards. Imported by tests/conftest.py's ``postgres`` and ``postgres_url`` fixtures."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest


def pg_bindir() -> Path | None:
    """Folder of initdb/pg_ctl: Debian's /usr/lib/postgresql/<version>/bin (newest), else $PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def run_as_prefix(folder: Path) -> list[str]:
    """Under root, run the server as an unprivileged user who owns ``folder``."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(user)
            os.chown(folder, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("running as root and runuser is missing; PostgreSQL refuses to run as root")
            return [runuser, "-u", user, "--"]
    pytest.skip("running as root without a 'postgres' or 'nobody' user to run PostgreSQL")


class PostgresCluster:
    """A fresh cluster (trust auth, fsync off) on 127.0.0.1:<free port>; :meth:`stop` and :meth:`start` simulate an
    outage (same port, same data)."""

    def __init__(self, free_port: Callable[[], int]) -> None:
        bindir = pg_bindir()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="paraling-pg-"))
        os.chmod(self.root, 0o755)
        self.prefix = run_as_prefix(self.root)
        self.data, self.log = self.root / "data", self.root / "server.log"
        initdb = [str(bindir / "initdb"), "-D", str(self.data), "-U", "paraling", "--auth=trust", "-E", "UTF8"]
        subprocess.run(
            [*self.prefix, *initdb, "--no-sync"],
            check=True,
            capture_output=True,
        )
        self.port: int | None = None
        for _ in range(3):  # the port may be taken between choosing and binding
            self.port = free_port()
            if self.start(check=False):
                break
            self.port = None
        if self.port is None:
            text = self.log.read_text() if self.log.exists() else ""
            shutil.rmtree(self.root, ignore_errors=True)
            pytest.fail(f"PostgreSQL did not start: {text[-2000:]}")

    @property
    def url(self) -> str:
        """``postgresql://paraling@127.0.0.1:<port>/postgres``."""
        return f"postgresql://paraling@127.0.0.1:{self.port}/postgres"

    def start(self, check: bool = True) -> bool:
        """Start the server (waits until it accepts connections)."""
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.log)]
        r = subprocess.run(
            [*self.prefix, *pg_ctl, "-w", "-t", "60", "start"],
            capture_output=True,
            text=True,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start again: {r.stderr[-1000:]}")
        return r.returncode == 0

    def stop(self) -> None:
        """Stop the server at once (connections are cut, as in a crash)."""
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
