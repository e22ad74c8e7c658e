"""Real servers for the distributed tests and the scale-out measurement: a PostgreSQL server and a
single-node SLURM cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd), each on throwaway data dirs,
listening on 127.0.0.1 only, on free ports, stopped by PID afterwards.

Installed by tools/install_services.sh (Debian packages); started here as root (`runuser`/Popen(user=)
run each daemon as its own system user). Used as context managers:

    with postgres_server() as pg:      # pg.url() has no password; pg.env() holds PGPASSWORD
        ...
    with slurm_cluster() as slurm:     # slurm.env() holds SLURM_CONF for sbatch/squeue/sacct
        ...
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


class ServerError(RuntimeError):
    """A server could not start; the message says which and shows its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name: str) -> str:
    """A server binary: on PATH, or in Debian's versioned PostgreSQL bin dir."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                                   reverse=True)), None)
    if not found:
        raise ServerError(f"{name} is not installed: run `bash tools/install_services.sh` (as root)")
    return found


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else f"(no log at {path})"


def wait_until(ready, what: str, timeout: float, log: Path, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"{what} exited with code {proc.returncode}:\n{log_tail(log)}")
        if time.time() > deadline:
            raise ServerError(f"{what} not ready after {timeout:.0f} s:\n{log_tail(log)}")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_pid(pid: int, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def throwaway_dir(prefix: str, owner: str | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if owner:
        shutil.chown(path, owner, owner)
    return path


def as_user(user: str) -> list[str]:
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


# -- PostgreSQL -----------------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    port: int
    user: str
    password: str
    database: str
    pid: int

    def url(self, driver: str = "psycopg2") -> str:
        """The storage URL as a user writes it: no password (libpq reads PGPASSWORD). driver "" is the plain
        postgresql:// (SQLAlchemy 2.1: psycopg 3)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb on a throwaway dir, pg_ctl start on 127.0.0.1:<free port>, a role and database `optuna`
    with a random password; stopped (pg_ctl stop, then the postmaster's PID) and removed afterwards."""
    initdb, pg_ctl, psql = tool("initdb"), tool("pg_ctl"), tool("psql")
    root = throwaway_dir("cifar-pg-", owner="postgres" if os.geteuid() == 0 else None)
    data, log = root / "data", root / "server.log"
    port, password, pid = free_port(), secrets.token_hex(16), None
    try:
        subprocess.run([*as_user("postgres"), initdb, "-D", str(data), "-U", "postgres", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8"], check=True, capture_output=True, text=True)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=200 -c fsync=off"
        started = subprocess.run([*as_user("postgres"), pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60",
                                  "-o", options, "start"], capture_output=True, text=True)
        if started.returncode != 0:
            raise ServerError(f"PostgreSQL did not start: {started.stderr}\n{log_tail(log)}")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        sql = [f"CREATE ROLE optuna LOGIN PASSWORD '{password}'", "CREATE DATABASE optuna OWNER optuna"]
        subprocess.run([*as_user("postgres"), psql, "-h", str(root), "-p", str(port), "-U", "postgres",
                        "-v", "ON_ERROR_STOP=1", *[a for s in sql for a in ("-c", s)]],
                       check=True, capture_output=True, text=True)
        yield PostgresServer(port, "optuna", password, "optuna", pid)
    except subprocess.CalledProcessError as e:
        raise ServerError(f"PostgreSQL set-up failed: {' '.join(e.cmd)}\n{e.stdout}\n{e.stderr}") from e
    finally:
        if pid is not None:
            subprocess.run([*as_user("postgres"), pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True)
            stop_pid(pid)
        shutil.rmtree(root, ignore_errors=True)


# -- SLURM ------------------------------------------------------------------------------------------------


@dataclass
class SlurmCluster:
    root: Path
    node: str
    cpus: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> str:
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, check=check).stdout

    def jobs(self) -> list[str]:
        """Job ids in the queue (array tasks as JOBID_INDEX)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def jobs_by_name(self) -> dict[str, str]:
        """Job name -> job id of the jobs in the queue (a sweep names each job after its trial folder)."""
        return dict(line.split() for line in self.run("squeue", "-h", "-o", "%j %i").splitlines() if line.strip())


SLURM_CONF = """\
ClusterName=cifar
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long SLURM holds a requeued (preempted) job back: 120 s by default
AuthInfo=socket={munge_socket},cred_expire=10
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
# no cgroups in a container: processes tracked by parent PID, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# accounting through slurmdbd: `sacct` (which submitit polls) knows finished and cancelled jobs
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
# slurmctld's connection to slurmdbd authenticates through this munge socket, not AuthInfo's
AccountingStoragePass={munge_socket}
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
# every CPU a job slot
SelectTypeParameters=CR_CPU
ReturnToService=2
# a cancelled job's processes get SIGTERM, then SIGKILL a second later
KillWait=1
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

SLURMDBD_CONF = """\
AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
PidFile={root}/slurmdbd.pid
LogFile={root}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={mysql_port}
StorageUser=root
StorageLoc=slurm_acct_db
"""


def start(cmd: list[str], log: Path, user: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """A daemon in the foreground, as `user`, so its PID is ours to stop."""
    kwargs = {"user": user, "group": user, "extra_groups": []} if user and os.geteuid() == 0 else {}
    out = log.open("ab")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True, **kwargs)


@contextlib.contextmanager
def slurm_cluster(cpus: int | None = None) -> Iterator[SlurmCluster]:
    """munged, MariaDB, slurmdbd, slurmctld and slurmd on this machine, as one node with `cpus` job slots
    (default: every core) in partition `debug`. Jobs still queued at the end are cancelled; then every
    daemon is stopped by PID and the throwaway dir removed."""
    if os.geteuid() != 0:
        raise ServerError("the SLURM test cluster runs its daemons as root (SlurmUser=root); run as root")
    binaries = {name: tool(name) for name in ("munged", "mariadbd", "mariadb-install-db", "slurmdbd",
                                              "slurmctld", "slurmd", "sacctmgr", "scontrol", "sinfo")}
    root = throwaway_dir("cifar-slurm-")
    node = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(root, node, cpus or os.cpu_count() or 1)
    procs: list[subprocess.Popen] = []
    try:
        # munge: a fresh key and its own socket, so nothing on the machine is shared or disturbed
        munge = throwaway_dir("cifar-munge-", owner="munge")
        munge_key = munge / "munge.key"
        munge_key.write_bytes(secrets.token_bytes(1024))
        munge_key.chmod(0o600)
        shutil.chown(munge_key, "munge", "munge")
        munge_socket = munge / "munge.socket"
        procs.append(start([binaries["munged"], "--foreground", f"--socket={munge_socket}",
                            f"--key-file={munge_key}", f"--pid-file={munge}/munged.pid",
                            f"--seed-file={munge}/munged.seed", f"--log-file={munge}/munged.log"],
                           root / "munged.out", user="munge"))
        wait_until(munge_socket.exists, "munged", 30, munge / "munged.log", procs[-1])

        # MariaDB for slurmdbd: throwaway data dir, TCP on 127.0.0.1 only, no grant tables (test only)
        mysql_dir, mysql_port = root / "mariadb", free_port()  # the server runs as mysql: its files in here
        mysql_dir.mkdir()
        shutil.chown(mysql_dir, "mysql", "mysql")
        mysql_log = mysql_dir / "error.log"
        subprocess.run([binaries["mariadb-install-db"], "--no-defaults", f"--datadir={mysql_dir}/data",
                        "--user=mysql", "--skip-test-db", "--auth-root-authentication-method=normal"],
                       check=True, capture_output=True, text=True)
        procs.append(start([binaries["mariadbd"], "--no-defaults", f"--datadir={mysql_dir}/data", "--user=mysql",
                            f"--port={mysql_port}", "--bind-address=127.0.0.1", f"--socket={mysql_dir}/mysql.sock",
                            f"--pid-file={mysql_dir}/mysql.pid", "--skip-grant-tables", "--skip-log-bin",
                            "--innodb-buffer-pool-size=64M", f"--log-error={mysql_log}"], root / "mariadb.out"))
        wait_until(lambda: port_open(mysql_port), "MariaDB", 60, mysql_log, procs[-1])

        settings = {"root": root, "node": node, "cpus": cluster.cpus, "munge_socket": munge_socket,
                    "ctld_port": free_port(), "slurmd_port": free_port(), "dbd_port": free_port(),
                    "mysql_port": mysql_port, "memory_mb": node_memory_mb()}
        (root / "state").mkdir()
        (root / "spool").mkdir()
        cluster.conf.write_text(SLURM_CONF.format(**settings))
        dbd_conf = root / "slurmdbd.conf"  # found next to slurm.conf; must be private to SlurmUser
        dbd_conf.write_text(SLURMDBD_CONF.format(**settings))
        dbd_conf.chmod(0o600)
        env = cluster.env()

        procs.append(start([binaries["slurmdbd"], "-D"], root / "slurmdbd.out", env=env))
        wait_until(lambda: port_open(settings["dbd_port"]), "slurmdbd", 60, root / "slurmdbd.log", procs[-1])
        subprocess.run([binaries["sacctmgr"], "-i", "add", "cluster", "cifar"], env=env, capture_output=True,
                       text=True)  # already there on a re-used database: fine
        procs.append(start([binaries["slurmctld"], "-D", "-f", str(cluster.conf)], root / "slurmctld.out", env=env))
        wait_until(lambda: subprocess.run([binaries["scontrol"], "ping"], env=env, capture_output=True,
                                          text=True).stdout.count("UP") > 0,
                   "slurmctld", 60, root / "slurmctld.log", procs[-1])
        procs.append(start([binaries["slurmd"], "-D", "-N", node, "-f", str(cluster.conf)], root / "slurmd.out",
                           env=env))
        wait_until(lambda: cluster.run("sinfo", "-h", "-n", node, "-o", "%T", check=False).strip() == "idle",
                   "slurmd (node idle)", 60, root / "slurmd.log", procs[-1])
        cluster.pids = {Path(p.args[0]).name: p.pid for p in procs}
        yield cluster
    except subprocess.CalledProcessError as e:
        raise ServerError(f"SLURM set-up failed: {' '.join(map(str, e.cmd))}\n{e.stdout}\n{e.stderr}") from e
    finally:
        if any(p.poll() is None for p in procs if Path(p.args[0]).name == "slurmctld"):
            subprocess.run(["scancel", "--full", "--quiet", f"--partition=debug"], env=cluster.env(),
                           capture_output=True)
            deadline = time.time() + 20
            while time.time() < deadline and cluster.run("squeue", "-h", "-o", "%i", check=False).strip():
                time.sleep(0.5)
        for proc in reversed(procs):  # slurmd, slurmctld, slurmdbd, MariaDB, munged
            stop_pid(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        shutil.rmtree(root, ignore_errors=True)
        if "munge" in locals():
            shutil.rmtree(munge, ignore_errors=True)


def node_memory_mb() -> int:
    """What the node offers jobs: the machine's memory less 1 GiB for the daemons."""
    total_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal:"))
    return max(total_kb // 1024 - 1024, 512)
