"""A throw-away PostgreSQL server for the tests, from the server binaries of the machine (Debian's
``postgresql`` package: /usr/lib/postgresql/<version>/bin; ``.ci/run`` installs it).

Contract:
- ``PgServer.start()`` makes a cluster in a new temporary folder (initdb, trust authentication, the
  only user ``postgres``), listening on 127.0.0.1 only, on a free port, its unix socket in that
  folder; ``stop()`` ends it (``immediate`` on request) and ``start()`` again brings it back with its
  data; ``destroy()`` stops it and removes the folder.
- A watchdog (a shell loop of its own session) stops the server and removes its folder as soon as the
  process that started it is gone, so a killed test run leaves no server behind.
- ``new_database()`` creates a database of a unique name and returns its URL
  (``postgresql+psycopg://postgres@127.0.0.1:<port>/<name>``).
- Run as root (PostgreSQL refuses root), every server binary runs as the ``postgres`` user
  (``runuser -u postgres --``), which owns the folder.
- No binaries: ``PgMissing`` with what to install (the tests fail with it: they do not skip).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): install them (apt-get install -y postgresql), as .ci/run does"


class PgMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, pg_ctl and postgres."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").is_file() and (d / "postgres").is_file()]
    if not found:
        raise PgMissing(INSTALL_HINT)
    return max(found, key=lambda d: tuple(int(x) if x.isdigit() else 0 for x in d.parent.name.split(".")))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One throw-away cluster (see the module's contract)."""

    _names = itertools.count(1)

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="qc-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.watchdog: subprocess.Popen[bytes] | None = None
        os.chmod(self.root, 0o755)
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin / tool), *args]
        return ["runuser", "-u", "postgres", "--", *cmd] if self.as_root else cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.is_file() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()} {done.stdout.strip()[-500:]} {log}")

    def start(self) -> PgServer:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n")
            self._start_watchdog()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            if self.watchdog is not None:
                self.watchdog.kill()
                self.watchdog.wait()
            shutil.rmtree(self.root, ignore_errors=True)

    def _start_watchdog(self) -> None:
        """Stop the server and remove its folder once this process is gone (also after kill -9)."""
        stop = " ".join(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"))
        script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{self.root}'"
        self.watchdog = subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """One statement in autocommit (CREATE DATABASE cannot run in a transaction)."""
        import psycopg  # the optional driver: only the PostgreSQL tests need it

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(sql)  # type: ignore[arg-type]
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def new_database(self, prefix: str = "qc") -> str:
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
