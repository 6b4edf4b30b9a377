#!/usr/bin/env python3
"""A local Terraform provider registry serving the files `scripts/release.sh` wrote, over HTTPS.

It speaks the provider registry protocol as Terraform's `direct` installer uses it:
  GET /.well-known/terraform.json                          service discovery: {"providers.v1": "/v1/providers/"}
  GET /v1/providers/NAMESPACE/TYPE/versions                every version in the release dir, its protocols
                                                           (from the manifest) and platforms (from the zips)
  GET /v1/providers/NAMESPACE/TYPE/VERSION/download/OS/ARCH
                                                           download_url, shasums_url, shasums_signature_url,
                                                           shasum (from SHA256SUMS) and the signing key
  GET /files/NAME                                          the release files themselves

It serves whatever the release directory holds, as it is: a test that wants a tampered zip or a foreign
signature puts one there. Standard library only, plus the openssl CLI when it has to make its own throwaway
CA and `localhost` certificate (--tls-dir without ca.pem/server.pem/server.key in it).

On start it prints one JSON line to stdout: {"url", "host", "port", "ca_file"}; point Terraform at it with
`SSL_CERT_FILE=<ca_file>` and `source = "<host>/NAMESPACE/TYPE"`. It runs until killed.

Usage: scripts/registry.py --dist dist [--tls-dir DIR] [--port 0] [--namespace datavault] [--type datavault]
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile

PROVIDER = "terraform-provider-datavault"


def make_tls(tls_dir):
    """Creates (once) a throwaway CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    ca, cert, key = (os.path.join(tls_dir, n) for n in ("ca.pem", "server.pem", "server.key"))
    if all(os.path.exists(p) for p in (ca, cert, key)):
        return ca, cert, key
    os.makedirs(tls_dir, exist_ok=True)
    ca_key = os.path.join(tls_dir, "ca.key")
    csr = os.path.join(tls_dir, "server.csr")
    ext = os.path.join(tls_dir, "server.ext")
    with open(ext, "w") as f:
        f.write(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for cmd in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "7",
         "-subj", "/CN=datavault throwaway test registry CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "7", "-extfile", ext],
    ):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return ca, cert, key


def openpgp_key_id(armor):
    """The 16-hex-digit key id of the first (primary) key in an ASCII-armored OpenPGP public key.

    A v4 fingerprint is SHA-1 over 0x99, the two-byte body length and the public-key packet body; the key id
    is its last eight bytes."""
    lines = armor.strip().splitlines()
    body, started = [], False
    for line in lines:
        if line.startswith("-----BEGIN"):
            started = True
            continue
        if not started:
            continue
        if line.startswith("-----END") or line.startswith("="):
            break
        if ":" in line or not line.strip():
            continue  # armor headers and the blank line after them
        body.append(line.strip())
    data = base64.b64decode("".join(body))
    first = data[0]
    if first & 0x40:  # new packet format
        tag = first & 0x3F
        o1 = data[1]
        if o1 < 192:
            length, start = o1, 2
        elif o1 < 224:
            length, start = ((o1 - 192) << 8) + data[2] + 192, 3
        else:
            length, start = int.from_bytes(data[2:6], "big"), 6
    else:  # old packet format
        tag = (first >> 2) & 0x0F
        size = {0: 1, 1: 2, 2: 4}[first & 0x03]
        length, start = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    if tag != 6:
        raise ValueError("armored key does not start with a public-key packet")
    packet = data[start : start + length]
    if packet[0] != 4:
        raise ValueError("only v4 OpenPGP keys are supported")
    digest = hashlib.sha1(b"\x99" + len(packet).to_bytes(2, "big") + packet).hexdigest().upper()
    return digest[-16:]


class Release:
    """What the release directory offers, read afresh on every request so tests can change it."""

    def __init__(self, dist, signing_key):
        self.dist = dist
        self.signing_key = signing_key

    def versions(self):
        out = {}
        for name in sorted(os.listdir(self.dist)):
            m = re.fullmatch(re.escape(PROVIDER) + r"_(.+)_([a-z0-9]+)_([a-z0-9]+)\.zip", name)
            if m:
                out.setdefault(m.group(1), []).append({"os": m.group(2), "arch": m.group(3)})
        return out

    def protocols(self, version):
        path = os.path.join(self.dist, f"{PROVIDER}_{version}_manifest.json")
        try:
            with open(path) as f:
                return json.load(f)["metadata"]["protocol_versions"]
        except (OSError, KeyError, ValueError):
            return ["6.0"]

    def shasum(self, version, filename):
        with open(os.path.join(self.dist, f"{PROVIDER}_{version}_SHA256SUMS")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].lstrip("*") == filename:
                    return parts[0]
        return None


def handler_for(release, namespace, ptype, base_url):
    prefix = f"/v1/providers/{namespace}/{ptype}/"

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "datavault-test-registry/1"

        def log_message(self, fmt, *args):
            sys.stderr.write("registry: %s %s\n" % (self.address_string(), fmt % args))

        def send_json(self, status, doc):
            body = json.dumps(doc, indent=2).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def not_found(self, what):
            self.send_json(404, {"errors": [f"{what} not found"]})

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/.well-known/terraform.json":
                return self.send_json(200, {"providers.v1": "/v1/providers/"})
            if path.startswith("/files/"):
                return self.send_file(path[len("/files/") :])
            if not path.startswith(prefix):
                return self.not_found(path)
            rest = path[len(prefix) :].strip("/").split("/")
            versions = release.versions()
            if rest == ["versions"]:
                return self.send_json(
                    200,
                    {
                        "versions": [
                            {"version": v, "protocols": release.protocols(v), "platforms": p}
                            for v, p in versions.items()
                        ]
                    },
                )
            if len(rest) == 4 and rest[1] == "download":
                version, os_name, arch = rest[0], rest[2], rest[3]
                if {"os": os_name, "arch": arch} not in versions.get(version, []):
                    return self.not_found(f"{namespace}/{ptype} {version} for {os_name}_{arch}")
                filename = f"{PROVIDER}_{version}_{os_name}_{arch}.zip"
                sums = f"{PROVIDER}_{version}_SHA256SUMS"
                with open(release.signing_key) as f:
                    armor = f.read()
                return self.send_json(
                    200,
                    {
                        "protocols": release.protocols(version),
                        "os": os_name,
                        "arch": arch,
                        "filename": filename,
                        "download_url": f"{base_url}/files/{filename}",
                        "shasums_url": f"{base_url}/files/{sums}",
                        "shasums_signature_url": f"{base_url}/files/{sums}.sig",
                        "shasum": release.shasum(version, filename),
                        "signing_keys": {
                            "gpg_public_keys": [
                                {
                                    "key_id": openpgp_key_id(armor),
                                    "ascii_armor": armor,
                                    "trust_signature": "",
                                    "source": "DataVault (test registry)",
                                    "source_url": None,
                                }
                            ]
                        },
                    },
                )
            return self.not_found(path)

        def send_file(self, name):
            if "/" in name or name.startswith(".") or not os.path.isfile(os.path.join(release.dist, name)):
                return self.not_found(name)
            with open(os.path.join(release.dist, name), "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dist", required=True, help="release directory written by scripts/release.sh")
    ap.add_argument("--signing-key", help="ASCII-armored public key to advertise (default DIST/signing-key.asc)")
    ap.add_argument("--tls-dir", help="where ca.pem, server.pem, server.key are (made if absent; default: temp)")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    ap.add_argument("--namespace", default="datavault")
    ap.add_argument("--type", default="datavault")
    args = ap.parse_args()

    dist = os.path.abspath(args.dist)
    signing_key = os.path.abspath(args.signing_key or os.path.join(dist, "signing-key.asc"))
    ca, cert, key = make_tls(os.path.abspath(args.tls_dir or tempfile.mkdtemp(prefix="datavault-registry-tls-")))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), None)
    port = server.server_address[1]
    host = f"localhost:{port}"
    base_url = f"https://{host}"
    server.RequestHandlerClass = handler_for(Release(dist, signing_key), args.namespace, args.type, base_url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True

    print(json.dumps({"url": base_url, "host": host, "port": port, "ca_file": ca}), flush=True)
    sys.stderr.write(f"registry: serving {dist} at {base_url} (trust it with SSL_CERT_FILE={ca})\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
