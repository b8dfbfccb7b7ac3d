"""A real HTTP(S) server on loopback that records webhook deliveries and can be told to fail or redirect."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str = "/"
    server_name: str | None = None  # the TLS SNI the client sent, for https receivers


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0  # answer 503 to this many requests first
    redirect_to: str = ""  # answer every request with a redirect to this URL instead
    redirect_status: int = 302
    hits: int = 0  # requests answered, whatever the answer
    scheme: str = "http"

    @property
    def host(self) -> str:
        host = str(self.server.server_address[0])
        return f"[{host}]" if ":" in host else host

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def start_receiver(host: str = "127.0.0.1", *, port: int = 0, tls: ssl.SSLContext | None = None) -> Receiver:
    """Listen on ``host`` (an IPv4 or IPv6 loopback address) and ``port`` (0: a free one); with ``tls``,
    speak https."""
    receiver: Receiver
    names: dict[int, str | None] = {}  # SNI per connection (socket id), recorded during the handshake

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.hits += 1
            if receiver.redirect_to:
                self.send_response(receiver.redirect_status)
                self.send_header("Location", receiver.redirect_to)
            elif receiver.fail_next > 0:
                receiver.fail_next -= 1
                self.send_response(503)
            else:
                sni = names.get(id(self.connection))
                receiver.received.append(Received(dict(self.headers.items()), body, self.path, sni))
                self.send_response(204)
            self.end_headers()

        do_GET = do_POST  # noqa: N815 - a client that follows a redirect may turn the POST into a GET

        def log_message(self, *args: Any) -> None:
            pass

    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    server = server_class((host, port), Handler)
    if tls is not None:
        original = tls.sni_callback

        def record_sni(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, context: ssl.SSLContext) -> None:
            names[id(sock)] = name
            if original is not None:
                original(sock, name, context)  # type: ignore[arg-type]

        tls.sni_callback = record_sni  # type: ignore[assignment]
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(server, scheme="https" if tls is not None else "http")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
