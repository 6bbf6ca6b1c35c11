"""security.toml for the embedded SeaweedFS: JWT keys and an mTLS certificate, kept across restarts, owner-only."""
from __future__ import annotations

import ssl
import tomllib

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from framelog.stack.seaweed_security import (
    SECURITY_FILE,
    SeaweedKeys,
    TlsFiles,
    read_keys,
    render_security_toml,
    write_security_files,
)


def test_the_file_sets_every_jwt_key_tls_everywhere_but_s3_and_hides_the_uis(tmp_path):
    tls = write_security_files(tmp_path / "config", "127.0.0.1")
    path = tmp_path / "config" / SECURITY_FILE
    data = tomllib.loads(path.read_text())
    keys = [data["jwt"]["signing"]["key"], data["jwt"]["signing"]["read"]["key"],
            data["jwt"]["filer_signing"]["key"], data["jwt"]["filer_signing"]["read"]["key"]]
    assert all(len(k) == 64 for k in keys) and len(set(keys)) == 4
    assert data["access"]["ui"] is False
    assert data["filer"]["expose_directory_metadata"]["enabled"] is False
    assert data["grpc"]["ca"] == str(tls.ca)
    for c in ("master", "volume", "filer", "s3", "client"):
        assert (data["grpc"][c]["cert"], data["grpc"][c]["key"]) == (str(tls.cert), str(tls.key))
    assert set(data["https"]) == {"client", "master", "volume", "filer"}     # the S3 gateway stays plain HTTP
    assert data["https"]["client"]["enabled"] is True
    for p in (path, tls.ca, tls.cert, tls.key):
        assert p.stat().st_mode & 0o077 == 0, p
    assert (tmp_path / "config").stat().st_mode & 0o077 == 0


def test_the_certificate_is_signed_by_the_ca_and_serves_both_ends(tmp_path):
    tls = write_security_files(tmp_path, "127.0.0.1")
    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ctx = tls.client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_keys_and_certificates_survive_a_rewrite(tmp_path):
    tls = write_security_files(tmp_path, "127.0.0.1")
    first, cert = read_keys(tmp_path / SECURITY_FILE), tls.cert.read_bytes()
    write_security_files(tmp_path, "127.0.0.1")
    assert read_keys(tmp_path / SECURITY_FILE) == first and tls.cert.read_bytes() == cert


def test_a_file_missing_a_key_gets_new_keys(tmp_path):
    keys = SeaweedKeys.generate()
    text = render_security_toml(keys, TlsFiles.under(tmp_path)).replace(f'key = "{keys.signing_read}"', 'key = ""')
    (tmp_path / SECURITY_FILE).write_text(text)
    assert read_keys(tmp_path / SECURITY_FILE) is None
    write_security_files(tmp_path, "127.0.0.1")
    assert read_keys(tmp_path / SECURITY_FILE) not in (None, keys)
