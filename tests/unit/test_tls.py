from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from pytest_bluegreen.adapters.routers.tls import (
    ca_path,
    certificate_valid,
    ensure_certificate,
    install_certificate,
)
from pytest_bluegreen.core.errors import ConfigError


def test_writes_certificate_and_key_for_haproxy(tmp_path: Path) -> None:
    pem = tmp_path / "tls" / "site.pem"
    assert ensure_certificate(pem, hostnames=("shop.test", "localhost"))
    text = pem.read_text()
    assert "BEGIN CERTIFICATE" in text
    assert "BEGIN PRIVATE KEY" in text
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in ca_path(pem).read_text()
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["shop.test", "localhost"]
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    ca = x509.load_pem_x509_certificate(ca_path(pem).read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_python_clients_verify_against_the_ca_file(tmp_path: Path) -> None:
    """A real TLS handshake on loopback with Python's default (strict) verification."""
    pem = tmp_path / "site.pem"
    ensure_certificate(pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pem)
    client_ctx = ssl.create_default_context(cafile=str(ca_path(pem)))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(b"x")
        thread.join(timeout=5)


def test_keeps_a_valid_certificate(tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    ensure_certificate(pem)
    before = pem.read_bytes()
    assert not ensure_certificate(pem)
    assert pem.read_bytes() == before


def test_replaces_one_about_to_expire(tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    ensure_certificate(pem, days=3)
    assert not certificate_valid(pem)
    assert ensure_certificate(pem)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=300)
    assert certificate_valid(pem, now=later)


def test_a_certificate_not_issued_by_the_ca_file_is_replaced(tmp_path: Path) -> None:
    pem, other = tmp_path / "site.pem", tmp_path / "other" / "site.pem"
    ensure_certificate(pem)
    ensure_certificate(other)
    ca_path(pem).write_bytes(ca_path(other).read_bytes())
    assert not certificate_valid(pem)
    assert ensure_certificate(pem)
    assert certificate_valid(pem)


def test_garbage_is_not_valid(tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    pem.write_text("not a certificate")
    ca_path(pem).write_text("not a certificate")
    assert not certificate_valid(pem)


def test_a_teams_own_certificate_and_key_become_haproxys_pem(tmp_path: Path) -> None:
    made = tmp_path / "made" / "site.pem"
    ensure_certificate(made, ("shop.example",))
    text = made.read_text()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(text[: text.index("-----BEGIN PRIVATE KEY")])
    key.write_text(text[text.index("-----BEGIN PRIVATE KEY") :])
    site = tmp_path / "tls" / "site.pem"
    assert install_certificate(site, cert, key)
    assert site.read_text() == text  # chain, then key
    assert stat.S_IMODE(site.stat().st_mode) == 0o600
    assert not install_certificate(site, cert, key)  # unchanged: not rewritten


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "site.pem", tmp_path / "b" / "site.pem"
    ensure_certificate(first, ("a.example",))
    ensure_certificate(second, ("b.example",))
    marker = "-----BEGIN PRIVATE KEY"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(first.read_text().split(marker)[0])
    key.write_text(marker + second.read_text().split(marker)[1])
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        install_certificate(tmp_path / "site.pem", cert, key)
    assert not (tmp_path / "site.pem").exists()
