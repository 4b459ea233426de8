"""How much 100,000 wrong-token calls grow the store (docs/security.md).

Usage: VAULTD=build/vaultd /usr/bin/python3 tests/bench/denial_flood.py \
           [default | AUTH_FAILURES_PER_PEER]
Prints the status codes seen, the call rate, and the growth of the LMDB
pages in use (mdb_stat), measured on a fresh development vault.
"""
import concurrent.futures, os, pathlib, re, sys, tempfile, time
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from conftest import Daemon, pb
import grpc
limit = sys.argv[1] if len(sys.argv) > 1 else "default"
tmp = pathlib.Path(tempfile.mkdtemp())
d = Daemon(tmp / "vault"); d.start(); d.stop()
conf = d.data_dir / "vaultd.conf"
if limit != "default":
    conf.write_text(conf.read_text() + f"\nauth_failures_per_peer = {limit};\n")
d.start()
def used():
    out = os.popen(f"mdb_stat -e {d.data_dir/'db'}").read()
    pages = int(re.search(r"Number of pages used: (\d+)", out).group(1))
    return pages * 4096
u0 = used()
N = 100000
req = pb.GetAttributesRequest(consumer_id="x", purpose="service").SerializeToString()
def worker(k):
    with d.channel() as ch:
        fn = ch.unary_unary("/vault.v1.Consumers/GetAttributes", request_serializer=lambda b: b)
        codes = {}
        for _ in range(N // 8):
            try: fn(req, metadata=[("authorization", "Bearer wrong")], timeout=10)
            except grpc.RpcError as e: codes[e.code()] = codes.get(e.code(), 0) + 1
        return codes
t = time.time()
with concurrent.futures.ThreadPoolExecutor(8) as p: res = list(p.map(worker, range(8)))
dt = time.time() - t
d.stop()
tot = {}
for r in res:
    for k, v in r.items(): tot[k] = tot.get(k, 0) + v
print(limit, tot, f"{N/dt:.0f} calls/s", "pages used growth bytes:", used() - u0)
