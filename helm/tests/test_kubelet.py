"""The rendered chart, run the way the kubelet would run it (no cluster, no container runtime).

For every values file the docs show (README.md's standalone example, the chart README's
standalone, TLS and sidecar examples, the chart's example policy, the test values files, the
example application chart) and a user policy with entirely different issuer and upstream names,
each case:

1. renders the chart with the values as written, plus an overlay that only points what must be
   real here at real things: each issuer the *user's* values name at a real issuer this test
   serves over HTTP (discovery and JWKS), each upstream the user's values name at a real HTTP
   upstream, and the two container ports at free ports. Nothing the chart itself brings is
   touched, so a policy the chart merged into the user's (Helm merges values key by key) is
   run as it would be in a cluster;
2. writes the pod's ConfigMap and Secret volumes into a directory laid out as the kubelet does
   (each file a symlink through `..data` to a timestamped directory), files 0644;
3. starts the binary (a copy, as the image holds it) with the container's args (mount paths
   moved into that directory), its environment (`value` and `secretKeyRef`) and its user
   (`runAsUser`/`runAsGroup` through `setpriv`, with no new privileges);
4. polls the liveness and readiness probes as rendered (named ports resolved to the container
   port, initialDelaySeconds, periodSeconds and timeoutSeconds honoured): Ready within
   initialDelaySeconds + failureThreshold x periodSeconds, and no failed liveness probe;
5. sends traffic through the Service's target port: a public route, a protected one without a
   token (401) and with a token the issuer signed (200, from the upstream); TLS with a client
   certificate when the values turn them on;
6. sends SIGTERM: /readyz turns 503, new connections are still accepted and served for the
   first seconds (Kubernetes removes the pod from its endpoints meanwhile), and the process
   exits 0 within the rendered terminationGracePeriodSeconds.

    python -m pytest helm/tests/test_kubelet.py -q      (.ci/run runs all of helm/tests)

Needs what test_chart.py needs, plus `setpriv` (util-linux) when run as root.
"""

from __future__ import annotations

import base64
import copy
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from test_chart import (
    BIN,
    CHART,
    REPO,
    example_chart,
    gateway_config,
    gateway_container,
    gateway_pod,
    load_values,
    of_kind,
    render,
)

# --- the values files the docs show ----------------------------------------------------------


def doc_example(markdown: Path, name: str) -> dict:
    """The YAML block after `<!-- chart example: NAME … -->` in a Markdown file."""
    lines = markdown.read_text().splitlines()
    marker = f"<!-- chart example: {name} "
    at = next((i for i, l in enumerate(lines) if marker in l), None)
    assert at is not None, f"{markdown.name} has no {marker!r} block"
    start = next(i for i in range(at + 1, len(lines)) if lines[i].strip().startswith("```yaml"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
    return yaml.safe_load(textwrap.dedent("\n".join(lines[start + 1:end])))


def sidecar_chart(tmp: Path, portcullis_values: dict | None) -> Path:
    """The example application chart with the portcullis chart as its dependency. With
    `portcullis_values`, they replace the `portcullis:` block of its values.yaml: that chart
    stands for the user's own chart, whose values.yaml holds their portcullis values."""
    chart = example_chart(tmp)
    if portcullis_values is not None:
        values = yaml.safe_load((chart / "values.yaml").read_text())
        values["portcullis"] = portcullis_values
        (chart / "values.yaml").write_text(yaml.safe_dump(values))
    return chart


DIFFERENT_NAMES = {
    "config": {
        "upstreams": {"ledger": {"url": "http://ledger.finance.svc.cluster.local:8080"}},
        "issuers": {
            "acme-sso": {
                "issuer": "https://sso.acme.test/",
                "discovery": True,
                "audiences": ["ledger-api"],
            }
        },
        "routes": [
            {"name": "ping", "match": {"path": "/ping", "methods": ["GET"]}, "auth": "none"},
            {"name": "entries", "match": {"path": "/entries/**"}, "scopes": ["ledger:read"]},
        ],
    }
}


def cases() -> dict:
    """name -> (chart directory maker, user values): each values file the docs show."""
    readme = REPO / "README.md"
    chart_readme = CHART / "README.md"
    return {
        "readme-standalone": (None, lambda: doc_example(readme, "readme-standalone")),
        "chart-readme-standalone": (None, lambda: doc_example(chart_readme, "standalone")),
        "chart-readme-tls": (None, lambda: doc_example(chart_readme, "tls")),
        "chart-readme-sidecar": (
            lambda tmp: sidecar_chart(tmp, doc_example(chart_readme, "sidecar")["portcullis"]),
            lambda: {},
        ),
        "example-policy": (None, lambda: yaml.safe_load((CHART / "examples" / "policy.yaml").read_text())),
        "tls": (None, lambda: load_values("tls.yaml")),
        "standalone-full": (None, lambda: load_values("standalone-full.yaml")),
        "sidecar-example": (lambda tmp: sidecar_chart(tmp, None), lambda: load_values("sidecar.yaml")),
        "different-names": (None, lambda: copy.deepcopy(DIFFERENT_NAMES)),
    }


# --- real peers: an issuer with discovery and JWKS, an upstream ------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    r = subprocess.run(["openssl", *args], input=data, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


class Issuer:
    """Issuers at http://127.0.0.1:PORT/<name>/ (one RSA key, RS256), each with discovery."""

    def __init__(self, directory: Path):
        self.key = directory / "issuer-key.pem"
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.key))
        modulus = openssl("rsa", "-in", str(self.key), "-noout", "-modulus").decode().strip()
        n = bytes.fromhex(modulus.split("=", 1)[1])
        self.jwks = {"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                               "n": b64url(n), "e": b64url((65537).to_bytes(3, "big"))}]}
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                parts = self.path.strip("/").split("/", 1)
                if len(parts) == 2 and parts[1] == ".well-known/openid-configuration":
                    base = issuer.url(parts[0])
                    body = {"issuer": base, "jwks_uri": f"{base}jwks.json"}
                elif len(parts) == 2 and parts[1] == "jwks.json":
                    body = issuer.jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}/"

    def token(self, name: str, audience: str, scopes: list[str]) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": "k1"}
        claims = {"iss": self.url(name), "aud": audience, "sub": "kubelet-test", "iat": now,
                  "nbf": now - 5, "exp": now + 600, "scope": " ".join(scopes)}
        signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = openssl("dgst", "-sha256", "-sign", str(self.key), data=signing.encode())
        return f"{signing}.{b64url(signature)}"

    def close(self):
        self.server.shutdown()


class Upstream:
    """An HTTP/1.1 upstream: 200 `upstream <METHOD> <path>` to every request."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                data = f"upstream {self.command} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- values: the overlay that points the user's names at real peers --------------------------


def merged(base, overlay):
    """Helm's merge of an overlay into values: maps merge key by key, null deletes a key."""
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return without_nulls(overlay)
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = merged(out[key], value)
        else:
            out[key] = without_nulls(value)
    return out


def without_nulls(value):
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return copy.deepcopy(value)


def overlay_for(policy: dict, issuer: Issuer, upstream: Upstream, ports: dict) -> dict:
    """The values to merge over the user's own: their issuers and upstreams (by the names
    *they* wrote) at the real peers, and the container ports."""
    issuers = {
        name: {"issuer": issuer.url(name), "discovery": True, "allow_http": True, "jwks_uri": None,
               "jwks_file": None, "jwks": None, "algorithms": None, "hmac_secret_env": None}
        for name in (policy.get("issuers") or {})
    }
    upstreams = {
        name: {"url": upstream.url, "ca_file": None, "sni": None, "protocol": None,
               "dangerous_skip_verify": None}
        for name in (policy.get("upstreams") or {})
    }
    return {"ports": ports, "config": {"issuers": issuers, "upstreams": upstreams}}


# --- the kubelet's part: volumes, env, user ---------------------------------------------------


class Cluster:
    """The Secrets and ConfigMaps the documented values name, as a cluster would hold them."""

    def __init__(self, directory: Path):
        d = directory / "pki"
        d.mkdir()
        ca_key, ca = d / "ca.key", d / "ca.crt"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "2", "-subj", "/CN=Test Clients CA", "-addext",
                "basicConstraints=critical,CA:TRUE", "-keyout", str(ca_key), "-out", str(ca))
        leaf_key, leaf = d / "leaf.key", d / "leaf.crt"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "2", "-subj", "/CN=gw.edge.svc", "-addext", "subjectAltName=DNS:gw.edge.svc",
                "-keyout", str(leaf_key), "-out", str(leaf))
        client_key, client_csr, client = d / "client.key", d / "client.csr", d / "client.crt"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=kubelet-test-client", "-keyout", str(client_key), "-out", str(client_csr))
        ext = d / "client.ext"  # a v3 certificate for client authentication, as webpki wants
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", str(client_csr), "-CA", str(ca), "-CAkey", str(ca_key),
                "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(client))
        self.client = (str(client), str(client_key))
        tls = {"tls.crt": leaf.read_text(), "tls.key": leaf_key.read_text(), "ca.crt": ca.read_text()}
        cas = {"ca.crt": ca.read_text(), "clients.pem": ca.read_text()}
        self.objects = {
            ("secret", "gw-tls"): tls,
            ("configMap", "client-cas"): cas,
            ("secret", "client-cas"): cas,
            ("secret", "upstream-ca"): {"ca.crt": ca.read_text()},
            ("configMap", "internal-roots"): {"ca.crt": ca.read_text()},
            ("secret", "gateway-hmac"): {"secret": "s" * 32},
            ("secret", "partner-jwks"): {"jwks.json": json.dumps({"keys": []})},
        }

    def data(self, kind: str, name: str) -> dict[str, str]:
        assert (kind, name) in self.objects, f"the test's cluster has no {kind} {name}"
        return self.objects[(kind, name)]


def kubelet_volume(root: Path, name: str, files: dict[str, str]) -> Path:
    """A volume directory as the kubelet writes it: `..data` -> a timestamped directory, and
    each key a symlink through `..data`; readable by any uid (mode 0644, directories 0755)."""
    d = root / name
    stamp = d / "..2026_12_06_00_00_00.000000001"
    stamp.mkdir(parents=True)
    (d / "..data").symlink_to(stamp.name)
    for path, content in files.items():
        (stamp / path).write_text(content)
        os.chmod(stamp / path, 0o644)
        (d / path).symlink_to(f"..data/{path}")
    for p in (root, d, stamp):
        os.chmod(p, 0o755)
    return d


def volume_files(pod: dict, volume: dict, docs, cluster: Cluster) -> dict[str, str] | None:
    """What the kubelet would put in a ConfigMap or Secret volume (`items` honoured)."""
    if "configMap" in volume:
        source, name = volume["configMap"], volume["configMap"]["name"]
        rendered = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == name]
        data = rendered[0]["data"] if rendered else cluster.data("configMap", name)
    elif "secret" in volume:
        source, name = volume["secret"], volume["secret"]["secretName"]
        data = cluster.data("secret", name)
    else:
        return None
    if "items" in source:
        missing = [i["key"] for i in source["items"] if i["key"] not in data]
        assert not missing, f"{name} has no key {missing}: the kubelet would not start the pod"
        data = {i["path"]: data[i["key"]] for i in source["items"]}
    return data


def container_env(container: dict, cluster: Cluster) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/nonroot"}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = cluster.data("secret", ref["name"])[ref["key"]]
    return env


def user_of(pod: dict, container: dict) -> tuple[int, int] | None:
    ctx = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
    if "runAsUser" not in ctx:
        return None
    return int(ctx["runAsUser"]), int(ctx.get("runAsGroup", ctx["runAsUser"]))


# --- probes -----------------------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float) -> int | None:
    """The status of GET path on 127.0.0.1:port, or None (refused, timed out)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        status = c.getresponse().status
        c.close()
        return status
    except OSError:
        return None


class Prober(threading.Thread):
    """One probe, as the kubelet runs it: first after initialDelaySeconds, then every
    periodSeconds, each with timeoutSeconds; success is 200-399."""

    def __init__(self, probe: dict, port: int, started: float):
        super().__init__(daemon=True)
        self.path = probe["httpGet"]["path"]
        self.port = port
        self.delay = probe.get("initialDelaySeconds", 0)
        self.period = probe.get("periodSeconds", 10)
        self.timeout = probe.get("timeoutSeconds", 1)
        self.failure_threshold = probe.get("failureThreshold", 3)
        self.started = started
        self.results: list[tuple[float, int | None]] = []
        self.stop = threading.Event()

    def run(self):
        next_at = self.started + self.delay
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            status = http_get(self.port, self.path, self.timeout)
            self.results.append((time.monotonic() - self.started, status))
            next_at += self.period

    def first_success(self) -> float | None:
        return next((t for t, s in self.results if s is not None and 200 <= s < 400), None)

    def most_failures_in_a_row(self, before: float) -> int:
        """The longest run of failed probes among those made before `before` (seconds)."""
        worst = run = 0
        for t, s in self.results:
            if t >= before:
                break
            run = 0 if s is not None and 200 <= s < 400 else run + 1
            worst = max(worst, run)
        return worst


def port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return named[0]


# --- the test ----------------------------------------------------------------------------------


def route_request(config: dict) -> tuple[dict, dict]:
    """(a public request, a protected request with the issuer and scopes its token needs),
    from the routes of the rendered config."""
    def concrete(route: dict) -> tuple[str, str, str | None]:
        m = route["match"]
        path = re.sub(r"\*\*$", "kubelet", m["path"]).replace("*", "x")
        method = (m.get("methods") or ["GET"])[0]
        host = m.get("host")
        return method, path, host.replace("*", "a") if host else None

    public = next(r for r in config["routes"] if r.get("auth") == "none")
    protected = next(r for r in config["routes"]
                     if r.get("auth", "required") == "required" and r.get("mode", "enforce") == "enforce"
                     and "claims" not in r)
    scopes = protected.get("scopes") or []
    if isinstance(scopes, dict):
        scopes = scopes.get("all_of") or scopes.get("any_of")[:1]
    issuer = (protected.get("issuers") or list(config["issuers"]))[0]
    method, path, host = concrete(protected)
    pm, pp, ph = concrete(public)
    return (
        {"method": pm, "path": pp, "host": ph},
        {"method": method, "path": path, "host": host, "issuer": issuer,
         "audience": config["issuers"][issuer]["audiences"][0], "scopes": scopes},
    )


def send(port: int, tls: ssl.SSLContext | None, method: str, path: str, host: str | None,
         headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    if tls:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Host": host or "gw.edge.svc", **(headers or {})}
    c.request(method, path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


@pytest.mark.parametrize("name", list(cases()))
def test_the_rendered_chart_runs_as_the_kubelet_would_run_it(name, tmp_path):
    assert BIN.exists(), f"{BIN} is missing: build it first (cargo build) or set PORTCULLIS_BIN"
    make_chart, user_values = cases()[name]
    chart = make_chart(tmp_path) if make_chart else CHART
    values = user_values()
    # The user's portcullis values: top level, or under `portcullis:` of their own chart (whose
    # values.yaml may hold them; the test values file then adds to it).
    nested = chart != CHART
    own = yaml.safe_load((chart / "values.yaml").read_text()).get("portcullis", {}) if nested else {}
    theirs = merged(own, values.get("portcullis", {})) if nested else values
    policy = theirs.get("config") or {}
    assert policy.get("routes"), f"{name}: the documented values have no policy"

    # A world-readable root (the gateway runs as another uid), not pytest's 0700 tmp_path.
    root = Path(tempfile.mkdtemp(prefix=f"kubelet-{name}-"))
    os.chmod(root, 0o755)
    issuer, upstream = Issuer(tmp_path), Upstream()
    process = None
    try:
        ports = {"proxy": free_port(), "admin": free_port()}
        extra = overlay_for(policy, issuer, upstream, ports)
        rendered_values = merged(values, {"portcullis": extra} if nested else extra)
        docs = render(chart, rendered_values, policy=False)
        pod = gateway_pod(docs)
        container = gateway_container(pod)
        cluster = Cluster(tmp_path)

        # Volumes, as the kubelet mounts them; mount paths move under root.
        moves = {}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        for m in container.get("volumeMounts", []):
            files = volume_files(pod, volumes[m["name"]], docs, cluster)
            if files is not None:
                moves[m["mountPath"].rstrip("/")] = str(kubelet_volume(root / "volumes", m["name"], files))

        def moved(text: str) -> str:
            for path, there in sorted(moves.items(), key=lambda kv: -len(kv[0])):
                text = text.replace(path + "/", there + "/")
            return text

        # The config the gateway reads names the TLS mounts: the same move, in the file itself.
        config_dir = Path(moves["/etc/portcullis"])
        real = config_dir / "..data" / "config.yaml"
        real.write_text(moved(real.read_text()))
        config, _ = gateway_config(docs, pod)

        binary = root / "bin" / "portcullis"
        binary.parent.mkdir()
        os.chmod(binary.parent, 0o755)
        shutil.copy2(BIN, binary)
        os.chmod(binary, 0o755)
        args = [moved(a) for a in container.get("args", [])]
        command = [str(binary), *args]
        user = user_of(pod, container)
        assert user == (65532, 65532), f"{name}: the container runs as {user}"
        if os.geteuid() == 0:
            assert shutil.which("setpriv"), "setpriv (util-linux) is missing"
            command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups",
                       "--no-new-privs", *command]
        else:
            print(f"not root: {name} runs as uid {os.geteuid()}, not {user[0]}")
        log = open(tmp_path / "gateway.log", "wb")
        started = time.monotonic()
        process = subprocess.Popen(command, env=container_env(container, cluster), stdout=log,
                                   stderr=subprocess.STDOUT, cwd="/")

        def logs() -> str:
            return (tmp_path / "gateway.log").read_text(errors="replace")[-4000:]

        # Probes, as rendered.
        liveness = Prober(container["livenessProbe"], port_number(container, container["livenessProbe"]["httpGet"]["port"]), started)
        readiness = Prober(container["readinessProbe"], port_number(container, container["readinessProbe"]["httpGet"]["port"]), started)
        liveness.start()
        readiness.start()
        budget = readiness.delay + readiness.failure_threshold * readiness.period + readiness.timeout
        while readiness.first_success() is None and time.monotonic() - started < budget + 1:
            assert process.poll() is None, f"{name}: the gateway exited ({process.returncode}):\n{logs()}"
            time.sleep(0.1)
        ready_at = readiness.first_success()
        assert ready_at is not None and ready_at <= budget, (
            f"{name}: not Ready within the readiness probe's budget ({budget} s): "
            f"{readiness.results}\n{logs()}")

        # Traffic through the Service's target port.
        services = [s for s in of_kind(docs, "Service") if not s["metadata"]["name"].endswith("-admin")]
        assert len(services) == 1, [s["metadata"]["name"] for s in services]
        target = port_number(container, services[0]["spec"]["ports"][0]["targetPort"])
        assert target == ports["proxy"]
        tls = None
        if config.get("tls"):
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
            if config["tls"].get("client_ca_file"):
                tls.load_cert_chain(*cluster.client)
        public, protected = route_request(config)
        status, body = send(target, tls, public["method"], public["path"], public["host"])
        assert (status, body.startswith(b"upstream ")) == (200, True), (name, public, status, body)
        status, _ = send(target, tls, protected["method"], protected["path"], protected["host"])
        assert status == 401, (name, protected, status)
        token = issuer.token(protected["issuer"], protected["audience"], protected["scopes"])
        status, body = send(target, tls, protected["method"], protected["path"], protected["host"],
                            {"Authorization": f"Bearer {token}"})
        assert (status, body.startswith(b"upstream ")) == (200, True), (name, protected, status, body)

        # SIGTERM, as the kubelet sends it when the pod is deleted.
        grace = pod["spec"]["terminationGracePeriodSeconds"]
        delay = int(config["server"]["shutdown_delay"].rstrip("s"))
        assert 0 < delay < int(config["server"]["shutdown_grace"].rstrip("s")) < grace
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        admin = ports["admin"]
        while http_get(admin, "/readyz", 1) != 503:
            assert time.monotonic() - signalled < 2, f"{name}: /readyz is not 503 after SIGTERM"
            time.sleep(0.05)
        # The endpoints controller and every kube-proxy take a few seconds to stop sending:
        # a new connection in those seconds must still be served.
        watch = min(delay - 1, 3)
        served = 0
        while time.monotonic() - signalled < watch:
            try:
                status, _ = send(target, tls, public["method"], public["path"], public["host"], timeout=5)
            except OSError as e:
                pytest.fail(f"{name}: a new connection {time.monotonic() - signalled:.2f} s after "
                            f"SIGTERM failed ({e}); shutdown_delay is {delay} s\n{logs()}")
            assert status == 200, (name, status)
            served += 1
            time.sleep(0.1)
        assert served >= 5, served
        try:
            code = process.wait(timeout=grace - (time.monotonic() - signalled))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name}: still running {grace} s after SIGTERM: the kubelet kills it\n{logs()}")
        assert code == 0, f"{name}: exit status {code}\n{logs()}"
        liveness.stop.set()
        readiness.stop.set()
        # Until SIGTERM, the liveness probe never failed often enough to restart the container.
        assert liveness.most_failures_in_a_row(signalled - started) < liveness.failure_threshold, (
            f"{name}: the liveness probe would restart it: {liveness.results}")
    finally:
        if process and process.poll() is None:
            process.kill()
            process.wait()
        issuer.close()
        upstream.close()
        shutil.rmtree(root, ignore_errors=True)


def test_every_documented_chart_example_is_a_case():
    """A values block marked in the docs is run above; a marker without a case fails here."""
    marked = set()
    for markdown in (REPO / "README.md", CHART / "README.md"):
        marked |= {m for m in re.findall(r"<!-- chart example: (\S+) ", markdown.read_text())}
    names = set(cases())
    for m in marked:
        assert m in names or f"chart-readme-{m}" in names, f"{m} is marked in the docs but not run"
