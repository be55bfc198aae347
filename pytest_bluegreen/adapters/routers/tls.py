"""The certificate HAProxy serves, made at setup time by a local CA and never committed."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pytest_bluegreen.core.errors import ConfigError
from pytest_bluegreen.core.files import write_atomically

RENEW_BEFORE = datetime.timedelta(days=14)


def certificate_valid(pem_path: Path, now: datetime.datetime | None = None) -> bool:
    """Tell whether ``pem_path`` holds a certificate that stays valid for a while yet."""
    if not pem_path.is_file() or not ca_path(pem_path).is_file():
        return False
    try:
        cert = x509.load_pem_x509_certificate(pem_path.read_bytes())  # the first: the server's
        ca = x509.load_pem_x509_certificate(ca_path(pem_path).read_bytes())
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert == ca:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return cert.not_valid_after_utc - RENEW_BEFORE > now


def ensure_certificate(
    pem_path: Path,
    hostnames: Sequence[str] = ("localhost",),
    addresses: Sequence[str] = ("127.0.0.1", "::1"),
    days: int = 365,
) -> bool:
    """Write a server certificate, its chain and its key into one PEM file (HAProxy's ``crt``).

    The certificate is issued by a throwaway local CA whose certificate goes beside it as
    ``ca.pem``, for clients to verify against (strict verifiers refuse a bare self-signed leaf as
    a trust anchor). The CA's key is discarded. Keeps a valid existing pair; returns True when it
    wrote new files.
    """
    if certificate_valid(pem_path):
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(minutes=5)
    not_after = now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pytest-bluegreen local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    pem = (
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_pem
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(pem_path, pem, mode=0o600)
    write_atomically(ca_path(pem_path), ca_pem, mode=0o644)
    return True


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def install_certificate(pem_path: Path, cert_file: Path, key_file: Path) -> bool:
    """The team's own certificate (chain) and key as the one PEM HAProxy reads; True if changed.

    Both are parsed first, and the key must belong to the certificate: a wrong pair is a clear
    error here, not a loadbalancer that does not start.
    """
    try:
        chain = cert_file.read_bytes()
        key_pem = key_file.read_bytes()
        cert = x509.load_pem_x509_certificate(chain)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"TLS files {cert_file}, {key_file}: {exc}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ) != key.public_key().public_bytes(serialization.Encoding.PEM, public):
        raise ConfigError(f"the key {key_file} does not belong to the certificate {cert_file}")
    pem = chain.rstrip(b"\n") + b"\n" + key_pem
    if pem_path.is_file() and pem_path.read_bytes() == pem:
        return False
    pem_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(pem_path, pem, mode=0o600)
    return True


def ca_path(pem_path: Path) -> Path:
    """The certificate alone, for clients (``curl --cacert``, ``requests`` ``verify=``)."""
    return pem_path.with_name("ca.pem")
