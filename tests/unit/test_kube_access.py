"""Kubeconfig values: a path or the file's text; clients are built from text in memory, credentials too."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.kube import access as kube_access
from tests.unit.loopback import API_VERSION, send_json

DOCUMENT = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}],
    "users": [{"name": "u", "user": {"token": "secret-token-value"}}],
    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "x",
}


@pytest.mark.parametrize(
    ("value", "text"),
    [("/home/me/.kube/config", False), ("apiVersion: v1\nkind: Config\n", True), ('  {"apiVersion": "v1"}', True)],
)
def test_text_or_path(value: str, text: bool) -> None:
    assert kube_access.is_text(value) is text


@pytest.mark.parametrize("render", [json.dumps, lambda d: json.dumps(d, indent=1)])
def test_client_from_text_is_built_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, render: object) -> None:
    # Any temporary file would land here: none may.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    api = kube_access.api_client(render(DOCUMENT))  # type: ignore[operator]
    assert api.configuration.host == "https://127.0.0.1:6443"
    assert api.configuration.api_key["BearerToken"] == "Bearer secret-token-value"
    assert list(tmp_path.iterdir()) == []


def test_client_from_path(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps(DOCUMENT))
    assert kube_access.api_client(str(path)).configuration.host == "https://127.0.0.1:6443"


def test_text_that_is_not_a_kubeconfig_is_refused() -> None:
    with pytest.raises(ValueError, match="not a kubeconfig document"):
        kube_access.api_client("just\ntext")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made for this test."""
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, extra in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "1", *extra, cwd=d)  # fmt: skip
    return d


VERSION = API_VERSION


def test_client_certificates_in_a_yaml_kubeconfig_never_touch_the_disk(tmp_path: Path, pki: Path) -> None:
    # An API server stand-in that requires a client certificate signed by the CA.
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cert = self.connection.getpeercert()
            seen.append(dict(x[0] for x in cert["subject"])["commonName"])
            send_json(self, VERSION)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()

    def data(name: str) -> str:
        return base64.standard_b64encode((pki / name).read_bytes()).decode()

    text = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": f"https://127.0.0.1:{server.server_port}",
                        "certificate-authority-data": data("ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "u",
                    "user": {"client-certificate-data": data("client.crt"), "client-key-data": data("client.key")},
                }
            ],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = set(Path(tempfile.gettempdir()).iterdir())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(scratch))  # any temporary file would land here
        from kubernetes import client

        api = kube_access.api_client(text)
        assert client.VersionApi(api).get_code().git_version == "v1.35.0"
    thread.join(timeout=5)
    server.server_close()
    assert seen == ["client"], "the server saw the client certificate"
    assert list(scratch.iterdir()) == [], "nothing was written"
    # Nor anywhere else in the temporary folder (other processes may write there: only the key is looked for).
    key = (pki / "client.key").read_bytes()
    new = [p for p in set(Path(tempfile.gettempdir()).iterdir()) - before if p.is_file()]
    assert not [p for p in new if key in p.read_bytes()], "the client key was written to a file"
    for path in (api.configuration.ssl_ca_cert, api.configuration.cert_file, api.configuration.key_file):
        assert str(path).startswith("/proc/self/fd/"), path
