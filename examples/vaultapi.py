"""A small Python client for vaultd on Debian's python3-grpcio.

The protobuf modules are generated from proto/ with protoc at import time
(into a temporary directory, removed once loaded), so nothing generated is
committed.
"""
import importlib.util
import pathlib
import subprocess
import tempfile

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_pb2():
    with tempfile.TemporaryDirectory(prefix="vault-pb2-") as out:
        subprocess.run(["protoc", f"--python_out={out}", f"-I{ROOT / 'proto'}",
                        "vault/v1/vault.proto"], check=True)
        spec = importlib.util.spec_from_file_location(
            "vault_pb2", f"{out}/vault/v1/vault_pb2.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


pb = _load_pb2()


class Vault:
    def __init__(self, addr, token_file):
        self.channel = grpc.insecure_channel(addr)
        token = pathlib.Path(token_file).read_text().strip()
        self.md = [("authorization", f"Bearer {token}")]

    def _unary(self, method, req, resp_cls):
        fn = self.channel.unary_unary(method,
                                      request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        return fn(req, metadata=self.md, timeout=60)

    def put(self, consumer_id, attrs):
        req = pb.PutAttributesRequest(consumer_id=consumer_id, attributes=[
            pb.Attribute(name=k, value=v) for k, v in attrs.items()])
        return self._unary("/vault.v1.Consumers/PutAttributes", req,
                           pb.PutAttributesResponse)

    def set_consent(self, consumer_id, purpose, granted, source="api"):
        req = pb.SetConsentRequest(consumer_id=consumer_id, purpose=purpose,
                                   granted=granted, source=source)
        return self._unary("/vault.v1.Consumers/SetConsent", req,
                           pb.SetConsentResponse)

    def feature_spec(self, purpose):
        return self._unary("/vault.v1.Features/GetFeatureSpec",
                           pb.GetFeatureSpecRequest(purpose=purpose),
                           pb.GetFeatureSpecResponse)

    def fetch_features(self, purpose, dataset_id, attributes=(), batch_size=2000,
                       page_token=""):
        """Yields (attribute names, rows) per batch; resumes after a broken
        stream from the last batch's next_page_token."""
        fn = self.channel.unary_stream("/vault.v1.Features/FetchFeatures",
                                       request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=pb.FeatureBatch.FromString)
        while True:
            req = pb.FetchFeaturesRequest(purpose=purpose, dataset_id=dataset_id,
                                          attributes=list(attributes),
                                          batch_size=batch_size, page_token=page_token)
            try:
                for batch in fn(req, metadata=self.md, timeout=600):
                    yield list(batch.attributes), batch.rows
                    page_token = batch.next_page_token
                return
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or not page_token:
                    raise
