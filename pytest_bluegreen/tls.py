"""The self-signed certificate HAProxy serves, made at setup time and never committed."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RENEW_BEFORE = datetime.timedelta(days=14)


def certificate_valid(pem_path: Path, now: datetime.datetime | None = None) -> bool:
    """Tell whether ``pem_path`` holds a certificate that stays valid for a while yet."""
    if not pem_path.is_file() or not ca_path(pem_path).is_file():
        return False
    try:
        cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    except ValueError:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return cert.not_valid_after_utc - RENEW_BEFORE > now


def ensure_certificate(
    pem_path: Path,
    hostnames: Sequence[str] = ("localhost",),
    addresses: Sequence[str] = ("127.0.0.1", "::1"),
    days: int = 365,
) -> bool:
    """Write a self-signed certificate and its key into one PEM file (HAProxy's ``crt`` form).

    The certificate alone goes beside it as ``ca.pem``, for clients to verify against. Keeps a
    valid existing one. Returns True when it wrote new files.
    """
    if certificate_valid(pem_path):
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    pem = cert_pem + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pem_path.with_name(pem_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, pem_path)
    ca_path(pem_path).write_bytes(cert_pem)
    return True


def ca_path(pem_path: Path) -> Path:
    """The certificate alone, for clients (``curl --cacert``, ``requests`` ``verify=``)."""
    return pem_path.with_name("ca.pem")
