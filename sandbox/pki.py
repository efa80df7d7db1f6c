"""A throw-away PKI for the sandbox: a test CA and leaf certificates.

    ca = make_ca(workdir)                          # CA cert + key in workdir
    crt, key = ca.issue(workdir, "linux-app")      # SAN: localhost, 127.0.0.1
    bad = make_ca(workdir, name="untrusted-ca")    # a second CA nobody trusts
    crt, key = ca.issue(workdir, "other", dns_names=["other.example"],
                        ip_addresses=[])           # wrong host for 127.0.0.1

The SCM hosts are addressed as https://127.0.0.1:PORT, so leaf certificates
default to IP SAN 127.0.0.1 and DNS SAN localhost.  Keys are EC P-256
(fast to generate); files are PEM, keys unencrypted and mode 0600.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DNS = ("localhost",)
DEFAULT_IPS = ("127.0.0.1",)
_VALIDITY = datetime.timedelta(days=30)
# Backdated so a freshly issued cert is valid even with a little clock skew.
_BACKDATE = datetime.timedelta(hours=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Ca:
    """A CA that can issue leaf certificates; cert_path is what clients trust."""
    name: str
    cert_path: Path
    key_path: Path

    def _load(self):
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        return cert, key

    def issue(self, directory, name: str, dns_names=DEFAULT_DNS,
              ip_addresses=DEFAULT_IPS) -> tuple[Path, Path]:
        """Issue a server certificate; returns (cert_path, key_path).

        The files are DIRECTORY/NAME.crt and DIRECTORY/NAME.key.  Pass other
        dns_names / ip_addresses (e.g. ip_addresses=[]) for a wrong-host cert.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = self._load()
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
        if not sans:
            raise ValueError("a leaf certificate needs at least one SAN")
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=True, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        _write_cert(cert_path, cert)
        _write_key(key_path, key)
        return cert_path, key_path

    def issue_wrong_host(self, directory, name: str,
                         host: str = "wrong-host.invalid") -> tuple[Path, Path]:
        """A certificate from this (trusted) CA for another host name only."""
        return self.issue(directory, name, dns_names=[host], ip_addresses=[])


def make_ca(directory, name: str = "sandbox-ca") -> Ca:
    """Create a self-signed CA: DIRECTORY/NAME.crt (trust this) and NAME.key."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "webapp sandbox"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, content_commitment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return Ca(name, cert_path, key_path)


def make_untrusted_ca(directory) -> Ca:
    """A second, independent CA: certificates it issues fail verification."""
    return make_ca(directory, name="untrusted-ca")
