"""A real HTTP(S) image host for download tests: scripted replies, requests counted server-side."""

from __future__ import annotations

import datetime
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Reply:
    """What the server answers for one path.

    `length`: "auto" sends the body's length, None sends no Content-Length (the body ends when
    the connection closes), an int sends that number. `cut_after`: send only that many body
    bytes, then close. `stall`: after `cut_after` bytes keep the connection open and silent.
    `trickle`: send the body one byte per `trickle` seconds.
    """

    body: bytes = b""
    status: int = 200
    content_type: str | None = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()
    length: int | str | None = "auto"
    chunked: bool = False
    cut_after: int | None = None
    stall: bool = False
    trickle: float | None = None


class ImageServer:
    """ThreadingHTTPServer on `host`, optionally TLS; records every request and connection."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[str] = []
        self.connections = 0
        self.stopping = threading.Event()
        self.host = host
        self.scheme = "https" if tls else "http"
        self.httpd = _QuietServer((host, 0), _handler(self))
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def hits(self, path: str) -> int:
        return self.requests.count(path)

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose in these tests


def tls_contexts(
    directory: Path, hostname: str = "localhost"
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `hostname` only, and a client trusting its CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "afterimage test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "leaf.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "leaf.pem", directory / "leaf.key")
    client = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    return server, client


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            server.connections += 1
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            server.requests.append(path)
            reply = server.routes.get(path, Reply(b"no such route", status=404))
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif reply.length == "auto":
                self.send_header("Content-Length", str(len(reply.body)))
            elif reply.length is not None:
                self.send_header("Content-Length", str(reply.length))
            if reply.length is None or reply.cut_after is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            body = reply.body if reply.cut_after is None else reply.body[: reply.cut_after]
            if reply.chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
                if reply.cut_after is None:
                    self.wfile.write(b"0\r\n\r\n")
            elif reply.trickle is not None:
                for i in range(len(body)):
                    if server.stopping.wait(reply.trickle):
                        return
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(body)
            self.wfile.flush()
            if reply.stall:
                server.stopping.wait(30)

    return Handler
