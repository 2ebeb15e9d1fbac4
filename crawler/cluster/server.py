"""A throwaway PostgreSQL server from the machine's own binaries: a temporary data directory, 127.0.0.1, a
free port; stopped and deleted when the block ends, or when the process that started it dies of anything. The
tests and `crawler bench --workers` start one; a real cluster runs its own server (see docs/distributed.md). As
root it runs as the `postgres` user, since `initdb` refuses root."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "crawler"
START_TIMEOUT = 60  # seconds for initdb plus a start on a slow, busy machine


class NoPostgres(Exception):
    """PostgreSQL's server programs are not installed here (or cannot run); the message says which."""


@dataclass(frozen=True, slots=True)
class LocalPostgres:
    """A running server: its port, data directory and programs."""

    port: int
    datadir: Path
    bin_dir: Path

    def url(self, dbname: str = "postgres") -> str:
        """A connection URL of database `dbname` as the superuser (trusted on loopback, no password)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        """Stop the server at once, as a crash would (its files stay until the block that started it ends)."""
        subprocess.run(self.stop_command(), capture_output=True, timeout=START_TIMEOUT, check=False)

    def stop_command(self) -> list[str]:
        """The command that stops the server at once."""
        return _as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"])


# Run beside the server: when the process that started it ends, however it ends (kill -9 included), the pipe
# from it closes, and this stops the server and deletes its files. The server outlives nothing that started it.
WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.buffer.read()
subprocess.run(sys.argv[2:], capture_output=True, timeout=60, check=False)
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def server_bin() -> Path:
    """The directory of `initdb` and `pg_ctl`: on PATH, or Debian's /usr/lib/postgresql/N/bin (newest)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    raise NoPostgres("PostgreSQL's server is not installed (no pg_ctl; Debian: apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner(argv: list[str]) -> list[str]:
    """`argv` run as the `postgres` user when this process is root."""
    if os.geteuid() != 0:
        return argv
    if not shutil.which("runuser"):
        raise NoPostgres("running as root, and runuser (util-linux) is missing to start PostgreSQL as postgres")
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    if done.returncode != 0:
        raise NoPostgres(f"{what} failed: {(done.stderr or done.stdout).strip()[-500:]}")


@contextmanager
def local_postgres(settings: dict[str, str] | None = None) -> Iterator[LocalPostgres]:
    """Initialise and start a PostgreSQL server for the block, then stop it and delete its files. `settings`
    are extra server settings (`-c name=value`). `NoPostgres` if it cannot be started."""
    bin_dir = server_bin()
    with tempfile.TemporaryDirectory(prefix="crawler-pg-") as tmp:
        datadir = Path(tmp) / "data"
        datadir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres")
            shutil.chown(datadir, "postgres")
        _run([str(bin_dir / "initdb"), "-D", str(datadir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
              "--locale=C.UTF-8", "--no-sync"], "initdb")  # fmt: skip
        port = _free_port()
        options = {"listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": str(datadir),
                   "max_connections": "200", **(settings or {})}  # fmt: skip
        option_line = " ".join(f"-c {name}={value}" for name, value in options.items())
        log = datadir / "server.log"
        _run([str(bin_dir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", option_line, "-w",
              "-t", str(START_TIMEOUT), "start"], "starting PostgreSQL")  # fmt: skip
        server = LocalPostgres(port, datadir, bin_dir)
        watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, tmp, *server.stop_command()],
                                    stdin=subprocess.PIPE, start_new_session=True)  # fmt: skip
        try:
            yield server
        finally:
            server.stop()
            assert watchdog.stdin is not None
            watchdog.stdin.close()
            watchdog.wait(timeout=START_TIMEOUT)
