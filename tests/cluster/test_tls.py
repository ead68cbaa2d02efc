"""TLS for cluster traffic (insilico.cluster._tls): the generated credentials form a valid chain with
private key permissions, and a TLS scheduler runs a trial identically while refusing clients that
do not hold a certificate from its CA (other CA, or plain TCP). No batch system needed."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from insilico.cluster import ClusterOptions, cluster_security, generate_credentials
from insilico.trials import run

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "trials/counterfactual_regimens.yaml"
SMALL = ["n=20", "replicates.n=1", "execution.chunk_size=10"]


def test_credentials_chain_and_permissions(tmp_path):
    d = generate_credentials(tmp_path / "tls", days=30)
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((d / "cert.pem").read_bytes())
    # the certificate is signed by the CA (raises InvalidSignature otherwise)
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)
    assert cert.issuer == ca.subject and cert.subject != ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 * 86400 <= life.total_seconds() <= 30 * 86400 + 600
    assert stat.S_IMODE(os.stat(d / "key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) & 0o077 == 0
    before = (d / "key.pem").read_bytes()
    with pytest.raises(FileExistsError, match="key.pem"):
        generate_credentials(d)
    assert (d / "key.pem").read_bytes() == before
    generate_credentials(d, overwrite=True)
    assert (d / "key.pem").read_bytes() != before


def test_security_generates_once_and_rejects_partial_dirs(tmp_path):
    sec = cluster_security(tmp_path / "a")
    assert sec.require_encryption and sec.tls_ca_file.endswith("ca.pem")
    key = (tmp_path / "a" / "key.pem").read_bytes()
    cluster_security(tmp_path / "a")                      # reuses, does not regenerate
    assert (tmp_path / "a" / "key.pem").read_bytes() == key
    (tmp_path / "a" / "cert.pem").unlink()
    with pytest.raises(FileNotFoundError, match="cert.pem"):
        cluster_security(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="ca.pem"):
        cluster_security(tmp_path / "empty", create=False)


def test_tls_scheduler_runs_trial_identically_and_refuses_strangers(tmp_path):
    from distributed import Client, LocalCluster
    sec = cluster_security(tmp_path / "tls")
    stranger = cluster_security(tmp_path / "other")       # a valid certificate from another CA
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      protocol="tls://", security=sec, dashboard_address=None) as lc:
        assert lc.scheduler_address.startswith("tls://")
        # the CLI path: --scheduler tls://… --tls-dir DIR
        ds = run(BASE, tmp_path / "tls.zarr", overrides=SMALL,
                 cluster=ClusterOptions(scheduler=lc.scheduler_address, tls_dir=tmp_path / "tls"))
        with Client(lc.scheduler_address, security=sec, timeout=10) as c:
            assert all(a.startswith("tls://") for a in c.scheduler_info()["workers"])
        with pytest.raises((OSError, TimeoutError)):
            Client(lc.scheduler_address, security=stranger, timeout=3)
        with pytest.raises((OSError, TimeoutError, ValueError)):
            Client(lc.scheduler_address.replace("tls://", "tcp://"), timeout=3)
    ref = run(BASE, tmp_path / "plain.zarr", overrides=SMALL, cluster=ClusterOptions(workers=1))
    for k in ref.data_vars:
        if k != "_done":
            np.testing.assert_array_equal(ds[k].values, ref[k].values, err_msg=k)


def test_cli_certs_and_tls_scheduler_without_credentials(tmp_path):
    cmd = [sys.executable, "-m", "insilico.cli"]
    ok = subprocess.run(cmd + ["certs", "--dir", str(tmp_path / "c")], capture_output=True, text=True)
    assert ok.returncode == 0 and (tmp_path / "c" / "key.pem").exists()
    again = subprocess.run(cmd + ["certs", "--dir", str(tmp_path / "c")], capture_output=True, text=True)
    assert again.returncode == 2 and "--dir" in again.stderr and "Traceback" not in again.stderr
    miss = subprocess.run(cmd + ["run", str(BASE), "--out", str(tmp_path / "x.zarr"), "--scheduler",
                                 "tls://127.0.0.1:1", "--tls-dir", str(tmp_path / "none"), "-q"],
                          capture_output=True, text=True)
    assert miss.returncode == 2 and "--tls-dir" in miss.stderr and "ca.pem" in miss.stderr
    assert not (tmp_path / "x.zarr").exists()
