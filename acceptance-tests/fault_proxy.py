#!/usr/bin/env python3
"""A fault-injecting HTTP proxy between the provider and the AWS emulator (moto).

Terraform and the provider get AWS_ENDPOINT_URL=http://127.0.0.1:<port of this proxy>; every request is
forwarded unchanged (method, path, query, headers including Host, body) to the real emulator, unless the
proxy decides to inject a fault, answered in the shape of the request's own AWS protocol:

- JSON protocols (an X-Amz-Target header), and restJson1 (EFS, paths under /2015-02-01/): HTTP 400,
  x-amzn-ErrorType: ThrottlingException, {"__type": "ThrottlingException", "message": "Rate exceeded"};
- query protocol (a form body with Action=): HTTP 400 with an <ErrorResponse> carrying code Throttling;
  EC2 (Version=2016-11-15) answers <Response><Errors><Error><Code>RequestLimitExceeded</Code>...;
- S3 REST (everything else): HTTP 503 with <Error><Code>SlowDown</Code>.

Other kinds: a bare HTTP 500 or 503 (code InternalError / ServiceUnavailable in the same shapes), a
connection reset (`reset`: the request is read, never forwarded, and the socket is closed without an
answer), a lost answer (`reset_after`: the request is forwarded and carried out by the emulator, then the
socket is closed without an answer, so a retried create meets what the first attempt made; not in the
default mix: moto ignores idempotency tokens such as Cloud Map's CreatorRequestId and accepts a second
CreateAutoScalingGroup of the same name, so a retried create duplicates there where AWS would not), and
added latency (the request is delayed, then forwarded).

One answer is corrected to AWS's on its way back, whatever the configuration: moto's Cloud Map ListServices
ignores its NAMESPACE_ID filter, so the proxy drops the services of other namespaces
(`only_listed_namespaces`).

Runtime control, on the proxy's own port (never forwarded):

  POST /__proxy/config   JSON, merged into the configuration (keys below); {"reset": true} first restores
                         the defaults and zeroes the counters
  GET  /__proxy/config   the configuration
  GET  /__proxy/stats    counters: total, forwarded, faulted, by kind, by action, freeze progress
  GET  /__proxy/log      one record per AWS request: n, action, method and path (which tell S3 and EFS
                         calls apart), service (from the signature), start/end (seconds since the proxy
                         started), status, fault
  POST /__proxy/clear    zero the counters and the log, keep the configuration

Configuration keys (also from the environment: FAULT_PROXY_RATE, FAULT_PROXY_KINDS (comma-separated),
FAULT_PROXY_LATENCY_MS, FAULT_PROXY_SEED):

  fault_rate        0..1, the probability that an AWS request gets a fault
  kinds             the fault kinds drawn from: throttle, 500, 503, reset, reset_after, latency
  fault_latency_ms  [min, max] delay of the `latency` fault kind
  latency_ms        delay added to every AWS request (the bench's per-request latency)
  seed              seeds the random choices (null: random)
  rules             [{"action": "CreateDBInstance", "status": 400, "code": "ValidationError",
                      "message": "...", "times": null}]: answer every request for that action (the
                    X-Amz-Target operation, the query Action, or "s3"/"efs" for REST requests; "*" for
                    every request, as AWS answers credentials it rejects) with that error in the
                    protocol's shape, `times` times (null: always); counted as faults.
                    Optional: "method" (HTTP method) and "path" (a regular expression searched in the
                    request path) narrow a rule to one REST call, such as HEAD of one bucket; "headers"
                    adds headers to the answer (S3's x-amz-bucket-region, say)
  freeze_after      K: the K-th AWS request is forwarded, but its answer is held back, and every later
                    request is held before it is forwarded; stats say when the K-th answer arrived
                    (freeze.committed), so a test can kill the client at exactly that point. Setting
                    freeze_after to null releases held requests by closing their connections.

  rate_limits       {"read": [burst, per_second], "write": [burst, per_second]}: a token bucket per AWS
                    service (the credential scope of the request's signature) and kind of call, as AWS
                    meters an account's requests; a request that finds its bucket empty is throttled in its
                    protocol's shape (counted as kind `rate_limit`). EC2 documents 100 / 20 per second for
                    describe calls and 200 / 5 for most writes; other services publish less, but throttle
                    alike. null: no limits.

  model             {"scale": N} (or FAULT_PROXY_MODEL_SCALE=N): answers as AWS would where the emulator
                    is silent (a database that takes minutes, tasks that start or fail to pull their image),
                    with time running N times faster; see aws_model.py. null: the emulator as it is.

Requests to /moto-api/ (the emulator's reset and state) are always forwarded untouched and not counted.

Usage: fault_proxy.py [--upstream URL] [--port N] [--verbose]. The upstream defaults to
$DATAVAULT_EMULATOR_URL; port 0 (the default) picks a free loopback port. The first line on stdout is
`PORT <n>` once the proxy accepts connections. Python standard library only.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import socket
import sys
import threading
import time
import re
import urllib.parse
import uuid

import aws_model

KINDS = ("throttle", "500", "503", "reset", "reset_after", "latency")
CONTROL = "/__proxy/"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


def default_config():
    return {
        "fault_rate": 0.0,
        "kinds": ["throttle", "500", "503", "reset", "latency"],
        "fault_latency_ms": [200, 1000],
        "latency_ms": 0,
        "seed": None,
        "rules": [],
        "freeze_after": None,
        "model": None,
        "rate_limits": None,
    }


def env_config():
    config = default_config()
    if os.environ.get("FAULT_PROXY_RATE"):
        config["fault_rate"] = float(os.environ["FAULT_PROXY_RATE"])
    if os.environ.get("FAULT_PROXY_KINDS"):
        config["kinds"] = [k.strip() for k in os.environ["FAULT_PROXY_KINDS"].split(",") if k.strip()]
    if os.environ.get("FAULT_PROXY_LATENCY_MS"):
        config["latency_ms"] = float(os.environ["FAULT_PROXY_LATENCY_MS"])
    if os.environ.get("FAULT_PROXY_SEED"):
        config["seed"] = int(os.environ["FAULT_PROXY_SEED"])
    if os.environ.get("FAULT_PROXY_MODEL_SCALE"):
        config["model"] = {"scale": float(os.environ["FAULT_PROXY_MODEL_SCALE"])}
    return config


class State:
    """Configuration, counters and the request log, shared by every handler thread."""

    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream)
        if self.upstream.scheme != "http" or not self.upstream.hostname:
            raise SystemExit(f"fault_proxy: upstream must be http://HOST:PORT, not {upstream!r}")
        self.started = time.monotonic()
        self.lock = threading.Condition()
        self.config = env_config()
        self.random = random.Random(self.config["seed"])
        self.generation = 0  # bumped whenever a freeze is released
        self.model = self.new_model(self.config["model"])
        self.clear()

    def new_model(self, settings):
        """A fresh behaviour model (aws_model.py) for these settings, or None when there are none."""
        if not settings:
            return None
        return aws_model.Model(settings["scale"], self.call_upstream, error_response)

    def call_upstream(self, target, body, headers):
        """(status, answer) of a JSON-protocol call the model makes to the emulator itself.

        The call is signed like the request it serves (the emulator reads the account from the access key),
        with the credential scope naming the target's service so the emulator routes it there.
        """
        service = "ecr" if target.startswith(aws_model.ECR) else "ecs"
        if target.startswith(aws_model.SECRETS):
            service = "secretsmanager"
        if target.startswith(CLOUD_MAP):
            service = "servicediscovery"
        payload = json.dumps(body).encode()
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port or 80, timeout=60)
        try:
            conn.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", headers.get("Host", self.upstream.netloc))
            authorization = re.sub(r"/([a-z0-9-]+)/aws4_request", f"/{service}/aws4_request", headers.get("Authorization", ""))
            conn.putheader("Authorization", authorization)
            conn.putheader("X-Amz-Target", target)
            conn.putheader("Content-Type", "application/x-amz-json-1.1")
            conn.putheader("Content-Length", str(len(payload)))
            conn.endheaders(payload)
            response = conn.getresponse()
            answer = response.read()
            try:
                return response.status, json.loads(answer or b"{}")
            except ValueError:
                return response.status, {}
        finally:
            conn.close()

    def clear(self):
        self.buckets = {}  # (service, "read" | "write") -> [tokens, last refill time]
        self.total = 0
        self.forwarded = 0
        self.faulted = 0
        self.by_kind = {}
        self.by_action = {}
        self.log = []
        self.freeze = {"k": self.config.get("freeze_after"), "reached": False, "committed": False, "held": 0}

    def validate(self, config):
        rate = float(config["fault_rate"])
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault_rate must be within 0..1, not {rate}")
        unknown = [k for k in config["kinds"] if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {list(KINDS)}")
        if rate > 0 and not config["kinds"]:
            raise ValueError("a fault rate needs at least one kind")
        k = config.get("freeze_after")
        if k is not None and (not isinstance(k, int) or k < 1):
            raise ValueError(f"freeze_after must be a request number >= 1 or null, not {k!r}")
        for rule in config["rules"]:
            if "action" not in rule:
                raise ValueError(f"a rule needs an action: {rule}")
            if "path" in rule:
                try:
                    re.compile(rule["path"])
                except re.error as e:
                    raise ValueError(f"a rule's path must be a regular expression: {e}") from e
        limits = config.get("rate_limits")
        if limits is not None:
            for kind in ("read", "write"):
                burst, per_second = limits.get(kind, [None, None])
                if not (float(burst) >= 1 and float(per_second) > 0):
                    raise ValueError(f"rate_limits.{kind} must be [burst >= 1, per_second > 0], not {limits.get(kind)!r}")
        model = config.get("model")
        if model is not None and not (isinstance(model, dict) and float(model.get("scale", 0)) > 0):
            raise ValueError(f"model must be null or {{\"scale\": N}} with N > 0, not {model!r}")

    def update(self, patch):
        with self.lock:
            reset = patch.pop("reset", False)
            if reset:
                if self.config.get("freeze_after") is not None:
                    self.generation += 1  # releases the held requests
                self.config = default_config()
                self.clear()
            new = dict(self.config)
            new.update(patch)
            self.validate(new)
            if "seed" in patch:
                self.random = random.Random(new["seed"])
            if reset or "model" in patch:
                # A model set again starts over: it remembers nothing of what the last one saw.
                self.model = self.new_model(new["model"])
            if "freeze_after" in patch and patch["freeze_after"] != self.config.get("freeze_after"):
                self.generation += 1
                self.freeze = {"k": new["freeze_after"], "reached": False, "committed": False, "held": 0}
            self.config = new
            self.lock.notify_all()
            return dict(self.config)

    def stats(self):
        with self.lock:
            return {
                "total": self.total,
                "forwarded": self.forwarded,
                "faulted": self.faulted,
                "by_kind": dict(self.by_kind),
                "by_action": dict(self.by_action),
                "freeze": dict(self.freeze),
                "uptime": time.monotonic() - self.started,
            }

    def now(self):
        return time.monotonic() - self.started

    def take_token(self, service, kind):
        """Whether the (service, kind) bucket had a token for this request (call with the lock held)."""
        limits = self.config.get("rate_limits")
        if not limits:
            return True
        burst, per_second = (float(x) for x in limits[kind])
        now = time.monotonic()
        tokens, last = self.buckets.get((service, kind), (burst, now))
        tokens = min(burst, tokens + (now - last) * per_second)
        allowed = tokens >= 1.0
        self.buckets[(service, kind)] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


READ_PREFIXES = ("Describe", "Get", "List", "Head", "BatchGet", "Lookup", "Search", "Discover")

CLOUD_MAP = "Route53AutoNaming_v20170314"


def only_listed_namespaces(body, payload, call_upstream, headers):
    """Cloud Map's ListServices answer as AWS gives it: only services of the namespaces a NAMESPACE_ID filter
    names. moto (5.1) ignores that filter and lists every namespace's services, so a lookup by name in one
    stack's namespace would see every stack's services of that name, which AWS never shows it. Each listed
    service's namespace is read from the emulator directly (not an AWS request of the client's)."""
    try:
        request = json.loads(body or b"{}")
        answer = json.loads(payload or b"{}")
    except ValueError:
        return payload
    wanted = None
    for rule in request.get("Filters") or []:
        if rule.get("Name") == "NAMESPACE_ID" and rule.get("Condition", "EQ") in ("EQ", "IN"):
            wanted = set(rule.get("Values") or [])
    if wanted is None or "Services" not in answer:
        return payload
    kept = []
    for service in answer["Services"]:
        status, got = call_upstream(f"{CLOUD_MAP}.GetService", {"Id": service.get("Id")}, headers)
        if status == 200 and got.get("Service", {}).get("NamespaceId") in wanted:
            kept.append(service)
    answer["Services"] = kept
    return json.dumps(answer).encode()


def call_kind(action, method):
    """"read" or "write", as AWS meters calls (the harness's Record::is_write tells them apart the same way)."""
    if action in ("s3", "efs"):
        return "read" if method in ("GET", "HEAD") else "write"
    return "read" if action.startswith(READ_PREFIXES) else "write"


def signing_service(headers):
    """The service in the request's SigV4 credential scope (`ec2`, `iam`, `s3`, ...)."""
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", headers.get("Authorization", ""))
    return match.group(1) if match else "unknown"


def classify(headers, body, path):
    """(protocol, action) of an AWS request: protocol is json, query, ec2, efs or s3."""
    target = headers.get("X-Amz-Target")
    if target:
        return "json", target.rsplit(".", 1)[-1]
    content_type = headers.get("Content-Type", "")
    if "x-www-form-urlencoded" in content_type and body:
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        except ValueError:
            form = {}
        action = form.get("Action", [None])[0]
        if action:
            protocol = "ec2" if form.get("Version", [None])[0] == "2016-11-15" else "query"
            return protocol, action
    if path.startswith("/2015-02-01/"):
        return "efs", "efs"
    return "s3", "s3"


def error_response(protocol, status, code, message):
    """(status, headers, body) of an AWS error in the protocol's own shape."""
    request_id = str(uuid.uuid4())
    if protocol in ("json", "efs"):
        body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": code,
            "x-amzn-RequestId": request_id,
        }
        return status, headers, body
    if protocol == "ec2":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
        return status, {"Content-Type": "text/xml;charset=UTF-8"}, body
    if protocol == "query":
        kind = "Receiver" if status >= 500 else "Sender"
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    return status, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body


def throttle(protocol):
    if protocol in ("json", "efs"):
        return error_response(protocol, 400, "ThrottlingException", "Rate exceeded")
    if protocol == "ec2":
        return error_response(protocol, 400, "RequestLimitExceeded", "Request limit exceeded.")
    if protocol == "query":
        return error_response(protocol, 400, "Throttling", "Rate exceeded")
    return error_response(protocol, 503, "SlowDown", "Please reduce your request rate.")


def server_error(protocol, status):
    if status == 500:
        return error_response(protocol, 500, "InternalError", "We encountered an internal error. Please try again.")
    return error_response(protocol, 503, "ServiceUnavailable", "Service is unavailable. Please try again.")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_proxy"
    state = None  # set by main()
    verbose = False

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        if self.verbose:
            sys.stderr.write("fault_proxy: " + (format % args) + "\n")

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def do_DELETE(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def do_PATCH(self):
        self.handle_any()

    def do_OPTIONS(self):
        self.handle_any()

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status, headers, body):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def drop(self):
        """Closes the connection without an answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith(CONTROL):
            return self.control(body)
        if self.path.startswith("/moto-api/"):
            status, headers, payload = self.forward(body)
            return self.relay(status, headers, payload)
        self.aws(body)

    def control(self, body):
        state = self.state
        what = self.path[len(CONTROL) :].split("?", 1)[0].strip("/")
        try:
            if what == "config" and self.command == "POST":
                result = state.update(json.loads(body or b"{}"))
            elif what == "config":
                with state.lock:
                    result = dict(state.config)
            elif what == "stats":
                result = state.stats()
            elif what == "log":
                with state.lock:
                    result = list(state.log)
            elif what == "clear" and self.command == "POST":
                with state.lock:
                    state.clear()
                result = {"cleared": True}
            else:
                return self.send(404, {"Content-Type": "application/json"}, b'{"error": "unknown control path"}')
        except (ValueError, TypeError, KeyError) as e:
            return self.send(400, {"Content-Type": "application/json"}, json.dumps({"error": str(e)}).encode())
        self.send(200, {"Content-Type": "application/json"}, json.dumps(result).encode())

    def matches(self, rule, action):
        """Whether the rule is for this request, and has answers left."""
        return (
            rule["action"] in ("*", action)
            and (rule.get("times") is None or rule["times"] > 0)
            and rule.get("method", self.command) == self.command
            and ("path" not in rule or re.search(rule["path"], self.path) is not None)
        )

    def decide(self, action):
        """Takes the request's number and decides its fate: (n, rule, fault kind, freeze role, generation)."""
        state = self.state
        with state.lock:
            state.total += 1
            n = state.total
            state.by_action[action] = state.by_action.get(action, 0) + 1
            config = state.config
            rule = None
            for candidate in config["rules"]:
                if self.matches(candidate, action):
                    rule = candidate
                    if rule.get("times") is not None:
                        rule["times"] -= 1
                    break
            kind = None
            if rule is None and config["fault_rate"] > 0 and state.random.random() < config["fault_rate"]:
                kind = state.random.choice(config["kinds"])
            if rule is None and kind is None:
                if not state.take_token(signing_service(self.headers), call_kind(action, self.command)):
                    kind = "rate_limit"
            k = config.get("freeze_after")
            role = None
            if k is not None:
                if n == k:
                    role = "commit"
                    state.freeze["reached"] = True
                    state.freeze["action"] = action
                elif n > k:
                    role = "hold"
            if rule is not None or kind is not None:
                label = f"rule:{rule['code']}" if rule is not None else kind
                state.by_kind[label] = state.by_kind.get(label, 0) + 1
                state.faulted += 1
            delay = 0.0
            if kind == "latency":
                low, high = config["fault_latency_ms"]
                delay = state.random.uniform(low, high) / 1000.0
            delay += float(config["latency_ms"]) / 1000.0
            return n, rule, kind, role, state.generation, delay

    def wait_released(self, generation):
        """Blocks while the freeze that was in force when the request arrived is still in force."""
        state = self.state
        with state.lock:
            state.freeze["held"] += 1
            while state.generation == generation:
                state.lock.wait(1.0)
            state.freeze["held"] -= 1

    def record(self, n, action, start, status, fault):
        with self.state.lock:
            self.state.log.append(
                {
                    "n": n,
                    "action": action,
                    "method": self.command,
                    "path": self.path,
                    "service": signing_service(self.headers),
                    "start": start,
                    "end": self.state.now(),
                    "status": status,
                    "fault": fault,
                }
            )

    def aws(self, body):
        state = self.state
        protocol, action = classify(self.headers, body, self.path)
        n, rule, kind, role, generation, delay = self.decide(action)
        start = state.now()
        if role == "hold":
            # Never forwarded: the client is about to be killed; closing is all that is left to do.
            self.wait_released(generation)
            self.record(n, action, start, None, "held")
            return self.drop()
        if delay:
            time.sleep(delay)
        if rule is not None:
            status, headers, payload = error_response(
                protocol, int(rule.get("status", 400)), rule["code"], rule.get("message", "Injected by fault_proxy")
            )
            headers.update(rule.get("headers") or {})
            self.record(n, action, start, status, f"rule:{rule['code']}")
            return self.send(status, headers, payload)
        if kind in ("throttle", "rate_limit"):
            status, headers, payload = throttle(protocol)
            self.record(n, action, start, status, kind)
            return self.send(status, headers, payload)
        if kind in ("500", "503"):
            status, headers, payload = server_error(protocol, int(kind))
            self.record(n, action, start, status, kind)
            return self.send(status, headers, payload)
        if kind == "reset":
            self.record(n, action, start, None, kind)
            return self.drop()
        model = state.model
        if model is not None and role is None and kind is None:
            answer = model.intercept(protocol, action, body, self.headers, self.command, self.path)
            if answer is not None:
                status, headers, payload = answer
                self.record(n, action, start, status, "model")
                return self.send(status, headers, payload)
        try:
            status, headers, payload = self.forward(body)
            if status == 200 and self.headers.get("X-Amz-Target") == f"{CLOUD_MAP}.ListServices":
                payload = only_listed_namespaces(body, payload, state.call_upstream, self.headers)
            if model is not None:
                payload = model.rewrite(protocol, action, body, self.headers, self.path, status, payload, self.command)
        except OSError as e:
            self.log_message("forwarding %s failed: %s", action, e)
            self.record(n, action, start, None, "upstream-error")
            return self.drop()
        with state.lock:
            state.forwarded += 1
            if role == "commit":
                state.freeze["committed"] = True
                state.lock.notify_all()
        if kind == "reset_after":
            self.record(n, action, start, status, kind)
            return self.drop()
        if role == "commit":
            # Forwarded and answered by the emulator; the answer never reaches the client.
            self.wait_released(generation)
            self.record(n, action, start, status, "frozen")
            return self.drop()
        self.record(n, action, start, status, kind)
        self.relay(status, headers, payload)

    def forward(self, body):
        upstream = self.state.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port or 80, timeout=300)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            payload = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            length = response.getheader("Content-Length")
            return response.status, (headers, length), payload
        finally:
            conn.close()

    def relay(self, status, headers_and_length, payload):
        headers, length = headers_and_length
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command == "HEAD":
            # A HEAD answer announces the length of the body a GET would have had.
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client killed mid-request (the kill tests do that on purpose) breaks its pipe: not news.
        if Handler.verbose or not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", default=os.environ.get("DATAVAULT_EMULATOR_URL"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if not args.upstream:
        raise SystemExit("fault_proxy: no upstream (--upstream or DATAVAULT_EMULATOR_URL)")
    Handler.state = State(args.upstream)
    Handler.verbose = args.verbose
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
