"""TLS credentials for Dask traffic between the scheduler, its workers and the client.

Batch clusters (Slurm, PBS) run the scheduler on the login/driver node and the workers on compute
nodes, so their traffic crosses the site network. insilico encrypts it with mutual TLS by default
(distributed's ``Security`` with ``require_encryption=True``): every party presents a certificate
signed by a private certificate authority (CA) and rejects peers that do not.

``generate_credentials(directory)`` writes that CA and one certificate for all roles:

==============  =================================================================  ======
file            content                                                            mode
==============  =================================================================  ======
``ca.pem``      CA certificate (the trust anchor; self-signed, ``CA:TRUE``)        0644
``cert.pem``    certificate for scheduler, workers and client, signed by the CA    0644
``key.pem``     private key of ``cert.pem`` (unencrypted PKCS#8)                   0600
==============  =================================================================  ======

The CA's own private key is discarded once the certificate is signed, so no further certificate
can be issued under this CA: regenerating replaces all three files (and invalidates clusters
started with the old ones). The directory (default ``~/.config/insilico/tls``, or
``$INSILICO_TLS_DIR``) must be readable by the worker jobs, i.e. on a file system the compute
nodes share, as home directories usually are. distributed checks the peer's certificate chain,
not its host name, which is what lets one certificate serve every node (the same choice as
``distributed.Security.temporary``).
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path

FILES = ("ca.pem", "cert.pem", "key.pem")


def default_tls_dir() -> Path:
    """``$INSILICO_TLS_DIR`` or ``~/.config/insilico/tls``."""
    env = os.environ.get("INSILICO_TLS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "insilico" / "tls"


def _present(directory) -> tuple[Path, list[str]]:
    """The credentials directory (``default_tls_dir()`` when None) and which of ``FILES`` it holds."""
    d = Path(directory).expanduser() if directory is not None else default_tls_dir()
    return d, [f for f in FILES if (d / f).exists()]


def generate_credentials(directory: str | os.PathLike | None = None, *, days: int = 365,
                         overwrite: bool = False) -> Path:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` (valid ``days`` days) into ``directory``.

    Refuses to replace existing files unless ``overwrite``. Returns the directory.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1:
        raise ValueError("days must be at least 1")
    d, present = _present(directory)
    if present and not overwrite:
        raise FileExistsError(f"{d} already holds {', '.join(present)}; replace them with overwrite=True "
                              "(`insilico certs --overwrite`)")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "insilico"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "insilico cluster CA")])
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, start, end, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                       encipher_only=False, decipher_only=False), True)])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "insilico"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "insilico-dask")])
    cert = _certificate(name, ca_name, key.public_key(), ca_key, start, end, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.DNSName("insilico-dask")]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)])

    pem = serialization.Encoding.PEM
    _write(d / "ca.pem", ca_cert.public_bytes(pem), 0o644)
    _write(d / "cert.pem", cert.public_bytes(pem), 0o644)
    _write(d / "key.pem", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()), 0o600)
    return d


def _certificate(subject, issuer, public_key, signing_key, start, end, extensions):
    """An X.509 certificate signed (SHA-256) by ``signing_key``; ``extensions``: (value, critical)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end))
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the start (a key is never world-readable, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def cluster_security(directory: str | os.PathLike | None = None, *, create: bool = True):
    """``distributed.Security`` for mutual TLS with the credentials in ``directory``.

    Generates them first when the directory holds none and ``create``; a directory holding only
    some of the files is an error (it names the missing ones) rather than silently replaced.
    """
    from distributed import Security

    d, present = _present(directory)
    if not present and create:
        generate_credentials(d)
    elif len(present) < len(FILES):
        missing = sorted(set(FILES) - set(present))
        raise FileNotFoundError(f"TLS directory {d} lacks {', '.join(missing)}; "
                                f"run `insilico certs --dir {d} --overwrite` to regenerate")
    ca, cert, key = (str(d / f) for f in FILES)
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)
