"""HTTPS both ways: the receiver serving TLS itself from a PEM certificate and key (a CA and a
certificate made here, callbacks sent over real TLS, no plain HTTP on that port), and behind a
proxy whose X-Forwarded-* headers are believed only when AFTERIMAGE_FORWARDED_ALLOW_IPS names it."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from afterimage.settings import Settings
from afterimage.tokens import callback_url
from tests.support import free_port, port_open, wait_for

SECRET, TOKEN = "tls-secret-123456", "tls-token-123456"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(where: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signs for 127.0.0.1 and localhost: (ca.pem, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("afterimage test CA"))
          .issuer_name(_name("afterimage test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = where / "ca.pem", where / "cert.pem", where / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@contextmanager
def receiver(redis_url: str, log: Path, **extra: str) -> Iterator[int]:
    """`afterimage receiver` as a child process; yields its port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    env.update({"AFTERIMAGE_REDIS_URL": redis_url, "AFTERIMAGE_SECRET": SECRET,
                "AFTERIMAGE_API_TOKEN": TOKEN, "AFTERIMAGE_PORT": str(port),
                "AFTERIMAGE_LOG_LEVEL": "DEBUG", **extra})
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "afterimage", "receiver"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is None and port_open(port), 20, "the receiver to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(20)


def evolink_done(task_id: str) -> dict[str, object]:
    return {"id": task_id, "object": "image.generation.task", "model": "gpt-image-2",
            "status": "completed", "progress": 100, "created": 1760000000,
            "results": ["https://files.example.com/0.png"]}


@pytest.fixture()
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path)


def test_callbacks_over_real_tls_and_no_plain_http_on_the_port(
    redis_url: str, tmp_path: Path, certs: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certs
    with receiver(redis_url, tmp_path / "receiver.log", AFTERIMAGE_TLS_CERT_FILE=str(cert),
                  AFTERIMAGE_TLS_KEY_FILE=str(key)) as port:
        base = f"https://127.0.0.1:{port}"
        trusting = httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=10)
        wait_for(lambda: trusting.get(f"{base}/healthz").status_code == 200, 20, "TLS /healthz")

        url = callback_url(base, SECRET, "evolink")
        assert url.startswith("https://")
        answer = trusting.post(url, json=evolink_done("tls-task-1"))
        assert answer.status_code == 200, answer.text
        assert trusting.post(url.rsplit("/", 1)[0] + "/wrong", json={}).status_code == 401
        task = trusting.get(f"{base}/v1/tasks/evolink/tls-task-1",
                            headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert task["state"] == "queued"

        with pytest.raises(httpx.TransportError):  # plain HTTP: no answer on this port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{base}/healthz", timeout=5)  # a client that does not know our CA
        trusting.close()


def test_tls_settings_go_together_and_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="AFTERIMAGE_TLS_CERT_FILE and AFTERIMAGE_TLS_KEY_FILE"):
        Settings.from_env({"AFTERIMAGE_TLS_CERT_FILE": str(tmp_path)})
    with pytest.raises(Exception, match="AFTERIMAGE_TLS_KEY_FILE: no such file"):
        Settings.from_env({"AFTERIMAGE_TLS_CERT_FILE": __file__,
                           "AFTERIMAGE_TLS_KEY_FILE": str(tmp_path / "nope.pem")})


def sign_in(port: int, forwarded: dict[str, str]) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/ops?token={TOKEN}", headers=forwarded,
                     follow_redirects=False, timeout=10)


def access_lines(log: Path) -> str:
    return "\n".join(line for line in log.read_text().splitlines() if "uvicorn.access" in line)


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def test_behind_a_named_proxy_the_scheme_and_client_are_the_forwarded_ones(
    redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "proxied.log"
    with receiver(redis_url, log, AFTERIMAGE_FORWARDED_ALLOW_IPS="127.0.0.1",
                  AFTERIMAGE_PUBLIC_URL="https://afterimage.example.com") as port:
        wait_for(lambda: sign_in(port, FORWARDED).status_code < 400, 20, "/ops sign-in")
        cookie = sign_in(port, FORWARDED).headers["set-cookie"]
        assert "Secure" in cookie
        plain = sign_in(port, {})  # the proxy says nothing: the scheme is plain http
        assert "Secure" not in plain.headers["set-cookie"]
        wait_for(lambda: "203.0.113.7" in access_lines(log), 10, "the forwarded client logged")


def test_forwarded_headers_from_anyone_else_are_not_believed(
    redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "direct.log"
    with receiver(redis_url, log) as port:
        wait_for(lambda: sign_in(port, FORWARDED).status_code < 400, 20, "/ops sign-in")
        assert "Secure" not in sign_in(port, FORWARDED).headers["set-cookie"]
        wait_for(lambda: "/ops" in access_lines(log), 10, "the access log")
        assert "203.0.113.7" not in access_lines(log)


def test_up_warns_when_an_https_only_provider_meets_an_http_public_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERIMAGE_")}
    env.update(AFTERIMAGE_DATA_DIR=str(tmp_path / "data"), AFTERIMAGE_PORT=str(free_port()),
               AFTERIMAGE_EVOLINK_API_KEY="sk-evolink-12345678",
               AFTERIMAGE_PUBLIC_URL="http://callbacks.example.com")
    log = tmp_path / "up.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "afterimage", "up", "--workers", "0",
                                 "--no-poller"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "refuses a callback URL that is not https" in log.read_text(), 30,
                 "the warning")
    finally:
        proc.terminate()
        proc.wait(30)
    warning = next(line for line in log.read_text().splitlines() if "refuses" in line)
    assert "evolink" in warning and "AFTERIMAGE_TLS_CERT_FILE" in warning
    assert "AFTERIMAGE_PUBLIC_URL" in warning


def test_no_warning_with_an_https_public_url_or_without_the_provider() -> None:
    key = {"AFTERIMAGE_EVOLINK_API_KEY": "sk-evolink-12345678"}
    assert Settings.from_env({**key, "AFTERIMAGE_PUBLIC_URL": "https://a.example"}
                             ).https_warnings() == []
    assert Settings.from_env({"AFTERIMAGE_PUBLIC_URL": "http://a.example"}).https_warnings() == []
    assert len(Settings.from_env({**key, "AFTERIMAGE_PUBLIC_URL": "http://a.example"}
                                 ).https_warnings()) == 1
    simulator = {"AFTERIMAGE_EVOLINK_BASE_URL": "http://127.0.0.1:9090/evolink"}
    assert Settings.from_env({**key, **simulator, "AFTERIMAGE_PUBLIC_URL": "http://a.example"}
                             ).https_warnings() == []
