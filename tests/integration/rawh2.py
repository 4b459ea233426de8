"""A bare HTTP/2 client for what well-behaved gRPC clients never do: send a
call's headers without its message, or header bytes grpcio refuses."""
import socket
import struct
import time


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def _string(b):
    """An HPACK string literal, no Huffman coding."""
    if len(b) < 127:
        return bytes([len(b)]) + b
    n, out = len(b) - 127, bytes([127])
    while n >= 128:
        out += bytes([n & 0x7f | 0x80])
        n >>= 7
    return out + bytes([n]) + b


def header(name, value):
    return b"\x00" + _string(name) + _string(value)   # literal, not indexed


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
    return s


def headers(stream, path, extra=()):
    """The HEADERS frame (END_HEADERS, no END_STREAM) of a call."""
    h = b"".join(header(k, v) for k, v in [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers"), *extra])
    return frame(1, 4, stream, h)


def message(stream, body):
    """A DATA frame carrying one whole gRPC message, ending the stream."""
    return frame(0, 1, stream, b"\x00" + struct.pack(">I", len(body)) + body)


def read_frames(s, seconds, until=None):
    """Frames read for up to seconds, or until until(frames) is true."""
    s.settimeout(0.2)
    buf, frames, end = b"", [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        buf += data
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = int.from_bytes(buf[:3], "big")
            frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff,
                           buf[9:9 + n]))
            buf = buf[9 + n:]
        if until is not None and until(frames):
            break
    return frames


def ended(frames, stream):
    """Whether stream was closed by the server (trailers or RST_STREAM)."""
    return any(f[2] == stream and ((f[0] == 1 and f[1] & 1) or f[0] == 3)
               for f in frames)
