"""A throw-away PostgreSQL cluster for the tests and benchmarks: ``initdb`` in a temporary folder and
``pg_ctl`` on a free local port, run as ``nobody`` when this is root (the server refuses root). No
pytest here, so ``benchmarks/bench_postgres.py`` uses it too."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN_DIRS = ("/usr/local/bin", *sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")))


def program(name: str) -> str | None:
    for folder in BIN_DIRS:
        if os.access(Path(folder) / name, os.X_OK):
            return str(Path(folder) / name)
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return program("initdb") is not None and program("pg_ctl") is not None


@contextmanager
def running_cluster(password: str, user: str = "crmlab") -> Iterator[tuple[str, int]]:
    """(host, port) of a new cluster whose superuser ``user`` has ``password`` (PGPASSWORD is set to it
    while the block runs); the cluster and its folder are gone afterwards."""
    initdb, pg_ctl = program("initdb"), program("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("PostgreSQL's initdb and pg_ctl are not installed")
    # not under pytest's folders (0700, root's): the server's own user must reach its data
    root = Path(tempfile.mkdtemp(prefix="crmlab-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    pwfile = root / "pw"
    pwfile.write_text(password)
    if as_user:
        shutil.chown(pwfile, "nobody")
    data, port = root / "data", free_port()
    old = os.environ.get("PGPASSWORD")
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", user, "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True,
                       capture_output=True)
        os.environ["PGPASSWORD"] = password
        yield "127.0.0.1", port
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        if old is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = old
