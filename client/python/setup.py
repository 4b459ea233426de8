"""Builds the vaultd package; the protobuf and gRPC modules are generated
from the repository's proto/vault/v1/vault.proto at build time, never at
import: protoc (Debian's protobuf-compiler) writes the messages and their
type stubs, python3-grpc-tools the service stubs."""
import pathlib
import shutil
import subprocess
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTO = "vault/v1/vault.proto"


def proto_root():
    # In the checkout the proto is two levels up; an sdist carries a copy.
    for root in (HERE / "proto", HERE.parent.parent / "proto"):
        if (root / PROTO).is_file():
            return root
    raise SystemExit(f"vaultd: {PROTO} not found: build from the vaultd checkout")


def generate(out):
    root = proto_root()
    with tempfile.TemporaryDirectory(prefix="vaultd-pb-") as tmp:
        subprocess.run(["protoc", f"-I{root}", f"--python_out={tmp}",
                        f"--pyi_out={tmp}", PROTO], check=True)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{root}",
                        f"--grpc_python_out={tmp}", PROTO], check=True)
        gen = pathlib.Path(tmp) / "vault" / "v1"
        out.mkdir(parents=True, exist_ok=True)
        for name in ("vault_pb2.py", "vault_pb2.pyi"):
            shutil.copy(gen / name, out / name)
        # The service stubs import the messages by their proto path; here
        # they live inside the package.
        grpc_src = (gen / "vault_pb2_grpc.py").read_text()
        old = "from vault.v1 import vault_pb2"
        if old not in grpc_src:
            raise SystemExit("vaultd: unexpected grpc_tools output")
        (out / "vault_pb2_grpc.py").write_text(
            grpc_src.replace(old, "from vaultd._pb import vault_pb2"))


class BuildPy(build_py):
    def run(self):
        super().run()
        generate(pathlib.Path(self.build_lib) / "vaultd" / "_pb")


setup(cmdclass={"build_py": BuildPy})
