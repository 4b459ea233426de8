"""Slow-loris on the metrics port (issue 14, point 1): one host holding
half-sent requests open must not take every connection the endpoint has,
or monitoring goes blind while the host's connections trickle."""
import socket

from test_metrics import metrics_url, mdaemon, scrape  # noqa: F401


def half_request(host, port, source):
    s = socket.create_connection((host, port), source_address=(source, 0))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")   # never finished
    return s


def test_one_host_cannot_take_every_metrics_connection(mdaemon):
    url = metrics_url(mdaemon)
    host, port = url.split("/")[2].rsplit(":", 1)
    held = [half_request(host, int(port), "127.0.0.2") for _ in range(32)]
    try:
        # A scraper on another address is still served.
        assert "vaultd_build_info" in scrape(url).text
    finally:
        for s in held:
            s.close()
