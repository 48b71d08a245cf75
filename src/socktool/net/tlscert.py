"""Certificates made or read with `cryptography` (imported here only, and this
module only by a TLS listener without --cert, or to describe a certificate the
stdlib will not decode: one accepted by pin or with --insecure)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import tempfile
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LIFETIME = datetime.timedelta(days=1)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # valid a little before now: a peer's clock may lag


class CertFiles(NamedTuple):
    cert: str
    key: str


def ephemeral_names(listen_host: str | None) -> list[str]:
    """The SAN entries: the listen address (when it is one) and this host's name."""
    names = [] if listen_host in (None, "", "::", "0.0.0.0") else [listen_host]
    hostname = socket.gethostname()
    if hostname and hostname not in names:
        names.append(hostname)
    return names or ["localhost"]


def make_ephemeral(directory: str, names: list[str]) -> CertFiles:
    """A self-signed ECDSA P-256 certificate for `names`, valid for a day, written
    to `directory` (the caller loads it and removes the directory)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = CertFiles(os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem"))
    with open(files.cert, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return files


def private_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="socktool-tls-")


class CertSummary(NamedTuple):
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_after: datetime.datetime


def describe_der(der: bytes) -> CertSummary:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(
            [f"DNS:{name}" for name in san.get_values_for_type(x509.DNSName)]
            + [f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        sans = ()
    return CertSummary(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), sans, cert.not_valid_after_utc)
