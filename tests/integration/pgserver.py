"""A throwaway PostgreSQL 15 server on loopback for the tests of the
PostgreSQL backend: scripts/pg-scratch starts and stops it (as the postgres
user: initdb refuses root); psql runs statements against it."""
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRATCH = str(ROOT / "scripts" / "pg-scratch")
PGBIN = pathlib.Path("/usr/lib/postgresql/15/bin")


def as_postgres(*cmd, **kw):
    """Runs a server-side PostgreSQL command as the postgres user."""
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, cmd)],
                          check=True, capture_output=True, text=True,
                          timeout=120, **kw)


class PgServer:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.conninfo = None

    @classmethod
    def scratch(cls):
        """A server in a new directory the postgres user can reach (pytest's
        own temporary directories are private to root)."""
        return cls(tempfile.mkdtemp(prefix="vault-pg-"))

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([SCRATCH, "start", str(self.root)], check=True,
                             capture_output=True, text=True, timeout=120)
        self.conninfo = out.stdout.strip().splitlines()[-1]
        return self

    def stop(self):
        subprocess.run([SCRATCH, "stop", str(self.root)], check=False,
                       capture_output=True, timeout=120)

    def psql(self, sql, db=None):
        info = self.conninfo if db is None else f"{self.conninfo} dbname={db}"
        out = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", info, "-c", sql], check=True,
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip()

    def basebackup(self, name):
        """A pg_basebackup copy of the whole server (WAL included), in a
        directory called name beside the server's."""
        dest = self.root / name
        dest.mkdir(parents=True)
        shutil.chown(dest, "postgres")
        dest.chmod(0o700)
        as_postgres(PGBIN / "pg_basebackup", "-d", self.conninfo, "-D", dest,
                    "-X", "stream", "-c", "fast")
        return dest

    def vault_conf(self):
        """The config lines of a new vault on a fresh database here."""
        return backend_conf(self.new_database()[1])

    def new_database(self):
        """A fresh database, so each vault starts empty; its conninfo."""
        name = "v" + secrets.token_hex(6)
        self.psql(f"CREATE DATABASE {name}")
        return name, f"{self.conninfo} dbname={name}"

    def files(self):
        """Every file of the server (data directory, WAL, logs): raw bytes."""
        for p in self.root.rglob("*"):
            if p.is_file():
                try:
                    yield p, p.read_bytes()
                except OSError:
                    continue


def backend_conf(conninfo, replica="r1"):
    """The config lines that put a dev vault on PostgreSQL."""
    lines = ['store_backend = "postgresql";',
             f'postgresql_conninfo = "{conninfo}";']
    if replica is not None:
        lines.append(f'replica_name = "{replica}";')
    return "\n".join(lines)


class PgCopy:
    """A server started from a pg_basebackup copy, on its own port."""

    def __init__(self, data):
        self.data = pathlib.Path(data)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conninfo = (f"host=127.0.0.1 port={self.port} user=postgres "
                         "dbname=postgres")

    def start(self):
        as_postgres(PGBIN / "pg_ctl", "-D", self.data, "-w", "-l",
                    self.data / "copy.log", "-o",
                    f"-p {self.port} -c listen_addresses=127.0.0.1 "
                    f"-c unix_socket_directories={self.data}", "start")
        return self

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--",
                        str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
