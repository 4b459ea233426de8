"""Put, get and delete end to end through python3-grpcio, and every error
the contract names."""
import time

import grpc
import pytest

from conftest import pb


def code_of(excinfo):
    return excinfo.value.code()


def test_put_get_delete(daemon):
    r = daemon.put("alice@example.com", email="alice@example.com", age="34",
                   device="mobile", last_purchase="2024-02-29",
                   email_opt_in="true")
    assert r.created and r.written == 5 and len(r.consumer_ref) == 64
    assert daemon.get("alice@example.com") == {
        "email": "alice@example.com", "age": "34", "device": "mobile",
        "last_purchase": "2024-02-29", "email_opt_in": "true"}
    assert daemon.get("alice@example.com", ["age", "zip"]) == {"age": "34"}
    # An update overwrites and does not recreate.
    r2 = daemon.put("alice@example.com", age="35")
    assert not r2.created and r2.consumer_ref == r.consumer_ref
    assert daemon.get("alice@example.com", ["age"]) == {"age": "35"}

    receipt = daemon.delete("alice@example.com", request_id="req-1")
    assert receipt.found and receipt.request_id == "req-1"
    assert receipt.consumer_ref == r.consumer_ref
    assert receipt.deleted_at_ms > 0 and receipt.epoch == 1
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("alice@example.com")
    assert code_of(e) == grpc.StatusCode.NOT_FOUND
    assert "alice" not in e.value.details()
    again = daemon.delete("alice@example.com")
    assert not again.found and len(again.request_id) == 32
    # Re-creating the id starts a new consumer.
    assert daemon.put("alice@example.com", zip="94103").created


@pytest.mark.parametrize("attrs,field", [
    ({"favourite_colour": "blue"}, "attributes[0].name"),
    ({"age": "thirty"}, "attributes[0].value"),
    ({"age": "131"}, "attributes[0].value"),
    ({"zip": "12345678901"}, "attributes[0].value"),
    ({"device": "toaster"}, "attributes[0].value"),
    ({"last_purchase": "2023-02-30"}, "attributes[0].value"),
    ({"email_opt_in": "yes"}, "attributes[0].value"),
    ({"email": "x" * 255}, "attributes[0].value"),
    ({}, "attributes"),
])
def test_bad_attributes_are_invalid_and_not_echoed(daemon, attrs, field):
    with pytest.raises(grpc.RpcError) as e:
        daemon.put("carol", **attrs)
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert field in e.value.details()
    for v in attrs.values():
        assert v not in e.value.details()
    assert "carol" not in e.value.details()


@pytest.mark.parametrize("cid,why", [
    ("", "must not be empty"),
    ("x" * 129, "longer than"),
    ("bad\nid", "control"),
])
def test_bad_consumer_ids(daemon, cid, why):
    for call in (lambda: daemon.put(cid, age="1"), lambda: daemon.get(cid),
                 lambda: daemon.delete(cid)):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
        assert "consumer_id" in e.value.details()
        assert why in e.value.details()


def test_put_is_all_or_nothing(daemon):
    with pytest.raises(grpc.RpcError) as e:
        daemon.put("dave", email="dave@example.com", age="old")
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert "attributes[1].value" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("dave")
    assert code_of(e) == grpc.StatusCode.NOT_FOUND
    daemon.put("dave", email="dave@example.com")
    with pytest.raises(grpc.RpcError):
        daemon.put("dave", email="new@example.com", zip="12345678901")
    assert daemon.get("dave") == {"email": "dave@example.com"}
    with pytest.raises(grpc.RpcError) as e:
        daemon.call("/vault.v1.Consumers/PutAttributes",
                    pb.PutAttributesRequest(consumer_id="dave", attributes=[
                        pb.Attribute(name="zip", value="1"),
                        pb.Attribute(name="zip", value="2")]),
                    pb.PutAttributesResponse)
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert "appears twice" in e.value.details()


def test_get_errors(daemon):
    daemon.put("erin", age="40")
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("erin", ["shoe_size"])
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert "names[0]" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("erin", purpose="astrology")
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert "purpose" in e.value.details()
    assert daemon.get("erin", purpose="service") == {"age": "40"}


def test_authentication_and_roles(daemon):
    daemon.stop()
    ml_token = daemon.add_principal("trainer", ["ml"])
    reader_token = daemon.add_principal("support", ["reader"], ["service"])
    daemon.start()
    daemon.put("frank", age="50")
    with pytest.raises(grpc.RpcError) as e:
        daemon.put("frank", token=None, age="51")
    assert code_of(e) == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        daemon.put("frank", token="not-a-real-token-but-long-enough", age="51")
    assert code_of(e) == grpc.StatusCode.UNAUTHENTICATED
    assert "not-a-real" not in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        daemon.put("frank", token=ml_token, age="51")
    assert code_of(e) == grpc.StatusCode.PERMISSION_DENIED
    assert "trainer" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("frank", token=ml_token)
    assert code_of(e) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        daemon.delete("frank", token=reader_token)
    assert code_of(e) == grpc.StatusCode.PERMISSION_DENIED
    assert daemon.get("frank", purpose="service", token=reader_token) == {"age": "50"}
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("frank", purpose="training", token=reader_token)
    assert code_of(e) == grpc.StatusCode.PERMISSION_DENIED
    assert daemon.get("frank", ["age"]) == {"age": "50"}


def test_unknown_method_is_unimplemented_at_once(daemon):
    for method in ("/vault.v1.Nope/Nothing", "/nothing", "/vault.v1.Consumers/Nope"):
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            daemon.call(method, b"", pb.PutAttributesResponse, timeout=20)
        assert code_of(e) == grpc.StatusCode.UNIMPLEMENTED
        assert time.monotonic() - t0 < 1.0


def test_garbage_request_is_invalid(daemon):
    for junk in (b"\xff\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x12\x05ab"):
        with pytest.raises(grpc.RpcError) as e:
            daemon.call("/vault.v1.Consumers/PutAttributes", junk,
                        pb.PutAttributesResponse)
        assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert daemon.put("grace", age="1").created


def test_oversized_request_is_refused(daemon):
    with pytest.raises(grpc.RpcError) as e:
        daemon.put("heidi", email="x" * (2 << 20))
    assert code_of(e) == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as e:
        daemon.put("heidi", email="x" * (600 << 10))
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        daemon.get("heidi")
    assert code_of(e) == grpc.StatusCode.NOT_FOUND


def test_health_check_and_watch(daemon):
    from conftest import health_pb
    assert daemon.health() == health_pb.HealthCheckResponse.SERVING
    assert daemon.health("vault.v1.Consumers") == health_pb.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as e:
        daemon.health("no.such.Service")
    assert code_of(e) == grpc.StatusCode.NOT_FOUND
    with daemon.channel() as ch:
        stream = daemon.stream(ch, "/grpc.health.v1.Health/Watch",
                               health_pb.HealthCheckRequest(service=""),
                               health_pb.HealthCheckResponse, token=None)
        assert next(stream).status == health_pb.HealthCheckResponse.SERVING
        stream.cancel()
    # The server still answers after a cancelled stream.
    assert daemon.put("ivan", age="2").created


def test_deadline_passes_without_harm(daemon):
    with daemon.channel() as ch:
        from conftest import health_pb
        stream = daemon.stream(ch, "/grpc.health.v1.Health/Watch",
                               health_pb.HealthCheckRequest(), token=None,
                               timeout=0.5)
        next(stream)
        with pytest.raises(grpc.RpcError) as e:
            next(stream)
        assert code_of(e) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert daemon.put("judy", age="3").created
