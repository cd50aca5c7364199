"""Checks the requests verif8-grpc sends upstream against 8x8's official OpenAPI spec.

  verif8-grpc --upstream-url RELAY ──▶ recording relay (this script) ──▶ prism mock SPEC --errors

Prism validates every request against the spec and answers a non-conforming one with an error
(its `sl-violations` header names the violations; its log says "Violation:"). The relay records
each exchange, so a failure names the request and its violations, and the test can also assert
what the spec can't: the exact JSON values, no `code` on a status read, the Bearer key.

Every StartVerification sets every option its channel allows, so every field name goes past prism.

  python tests/e2e/conformance.py --bin target/debug/verif8-grpc --grpcurl .tools/bin/grpcurl \
      --prism .tools/bin/prism [--spec ../shared/8x8-docs/verification_api.openapi.json]
"""

import argparse
import json
import re
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import harness
from harness import CheckFailed, Checks, Grpcurl, Proc

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "8x8-docs" / "verification_api.openapi.json"
VS = "verif8.v1.VerificationService"
SUBACCOUNT = "acme_verif8"
API_KEY = "test-key"
SESSIONS = f"/api/v2/subaccounts/{SUBACCOUNT}/sessions"

# Options every channel takes; template only where a text is read or sent (sms, call).
COMMON = {
    "destination": "+6598765432",
    "country": "SG",
    "brand": "Acme",
    "codeLength": 6,
    "codeValidity": "300s",
    "resetSession": True,
    "resendingInterval": "30s",
    "callbackUrl": "https://hooks.example.com/verif8",
    "clientIp": "203.0.113.7",
}
TEMPLATE = "{brand}: your code is {code}"
# channel -> (gRPC request, the JSON body 8x8 must receive). Each channel uses a different
# code type, so every CodeType value is mapped once.
STARTS = {
    "sms": (
        {**COMMON, "channel": "CHANNEL_SMS", "codeType": "CODE_TYPE_NUMERIC", "template": TEMPLATE,
         "sms": {"source": "Acme", "encoding": "SMS_ENCODING_GSM7"}},
        {"channel": "sms", "codeType": "NUMERIC", "template": TEMPLATE,
         "sms": {"source": "Acme", "encoding": "GSM7"}},
    ),
    "call": (
        {**COMMON, "channel": "CHANNEL_CALL", "codeType": "CODE_TYPE_NUMERIC_WITH_DASH",
         "template": TEMPLATE, "language": "en-US",
         "call": {"source": "+6512345678", "speed": 0.8, "repetition": 2, "voiceProfile": "en-US-Kimberly"}},
        {"channel": "call", "codeType": "NUMERIC_WITH_DASH", "template": TEMPLATE, "language": "en-US",
         "call": {"source": "+6512345678", "speed": 0.8, "repetition": 2, "voiceProfile": "en-US-Kimberly"}},
    ),
    "whatsapp": (
        {**COMMON, "channel": "CHANNEL_WHATSAPP", "codeType": "CODE_TYPE_ALPHANUMERIC", "language": "en-US",
         "whatsapp": {"templateName": "acme_otp"}},
        {"channel": "whatsapp", "codeType": "ALPHANUMERIC", "language": "en-US",
         "whatsapp": {"templateName": "acme_otp"}},
    ),
    "viber": (
        {**COMMON, "channel": "CHANNEL_VIBER", "codeType": "CODE_TYPE_ALPHANUMERIC_CAPITALS"},
        {"channel": "viber", "codeType": "ALPHANUMERIC_CAPITALS"},
    ),
    "sma": (
        {**COMMON, "channel": "CHANNEL_SMA", "codeType": "CODE_TYPE_ALPHANUMERIC_EASY"},
        {"channel": "sma", "codeType": "ALPHANUMERIC_EASY"},
    ),
}
# What every StartVerification body carries besides its channel's part.
COMMON_BODY = {"country": "SG", "brand": "Acme", "codeLength": 6, "codeValidity": 300, "resetSession": True,
               "resendingInterval": 30, "callbackUrl": "https://hooks.example.com/verif8",
               "clientIp": "203.0.113.7"}
# Request schemas whose unknown properties prism should reject (see strict_spec).
REQUEST_SCHEMAS = ["VerifyRequestV2", "VerifySmsChannel", "VerifyCallChannel", "VerifyWhatsAppChannel",
                   "VerifySmaCoverageCheckRequest"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the verif8-grpc binary")
    ap.add_argument("--grpcurl", required=True, help="the grpcurl binary")
    ap.add_argument("--prism", required=True, help="the prism binary")
    ap.add_argument("--spec", default=str(SPEC), help="8x8's OpenAPI spec (default: %(default)s)")
    return ap.parse_args()


def strict_spec(path, tmpdir):
    """A copy of the spec whose request objects are closed (additionalProperties: false).

    8x8's spec leaves them open, so prism would accept a misspelt field name ("codeLenght") as an
    unknown extra and the misspelt option would silently do nothing. Nothing else changes: prism
    5.14 loads the spec's OpenAPI 3.1.2 as it is.
    """
    if not Path(path).is_file():
        raise CheckFailed(f"8x8's OpenAPI spec not found at {path} (shared/ belongs beside the repo)")
    spec = json.loads(Path(path).read_text())
    for name in REQUEST_SCHEMAS:
        spec["components"]["schemas"][name]["additionalProperties"] = False
    out = Path(tmpdir) / "verification_api.strict.json"
    out.write_text(json.dumps(spec))
    return out


class Relay:
    """An HTTP relay to prism that records every exchange (method, path, query, headers, body,
    status, prism's violations)."""

    def __init__(self, target):
        self.exchanges = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.forward()

            def do_POST(self):
                self.forward()

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                req = urllib.request.Request(target + self.path, data=body or None, headers=headers,
                                             method=self.command)
                try:
                    resp = urllib.request.urlopen(req, timeout=30)
                except urllib.error.HTTPError as e:  # 4xx/5xx: pass them through as they are
                    resp = e
                answer = resp.read()
                url = urllib.parse.urlsplit(self.path)
                relay.exchanges.append({
                    "method": self.command, "path": url.path, "query": urllib.parse.parse_qs(url.query),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(body) if body else None, "status": resp.status,
                    "violations": json.loads(resp.headers.get("sl-violations") or "[]"),
                })
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):  # quiet: the exchanges are the log
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def since(self, n):
        return self.exchanges[n:]


def raw_status(url, body, key=API_KEY):
    """POSTs JSON straight to prism; returns (status, violations)."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        resp = urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        resp = e
    return resp.status, resp.headers.get("sl-violations") or ""


def self_check(c, prism_url):
    """Proves prism's validation is live: a conforming request passes, bad ones are refused."""
    url = prism_url + SESSIONS
    status, _ = raw_status(url, {"destination": "+6598765432", "channel": "sms", "codeLength": 4})
    c.equal(status, 200, "self-check: prism accepts a conforming request")
    status, why = raw_status(url, {"destination": "+6598765432", "codeLength": 99})
    c.ok(400 <= status < 500 and "codeLength" in why, "self-check: prism rejects codeLength 99", f"{status} {why}")
    status, why = raw_status(url, {"destination": "+6598765432", "codeLenght": 4})
    c.ok(400 <= status < 500 and "codeLenght" in why, "self-check: prism rejects a misspelt field",
         f"{status} {why}")
    status, _ = raw_status(url, {"destination": "+6598765432"}, key=None)
    c.equal(status, 401, "self-check: prism rejects a request without the Bearer key")


def expect_exchange(c, exchanges, what, method, path):
    """Exactly one upstream request for this RPC, conforming (2xx, no violations), authenticated."""
    c.ok(len(exchanges) == 1, f"{what}: one upstream request", json.dumps(exchanges, indent=1))
    x = exchanges[0]
    c.equal((x["method"], x["path"]), (method, path), f"{what}: upstream request")
    c.ok(200 <= x["status"] < 300 and not x["violations"], f"{what}: prism found it conforming",
         f"status {x['status']}, violations {json.dumps(x['violations'], indent=1)}\nbody {x['body']}")
    c.equal(x["headers"].get("authorization"), f"Bearer {API_KEY}", f"{what}: Authorization")
    return x


def conformance(c, args, state):
    prism_port = harness.free_port()
    spec = strict_spec(args.spec, state["tmp"].name)
    prism = Proc("prism", [args.prism, "mock", str(spec), "-h", "127.0.0.1", "-p", str(prism_port),
                           "--errors"])  # --errors: violations produce error responses
    state["procs"].append(prism)
    harness.wait_for(lambda: not prism.alive() or "Prism is listening" in prism.text(), 90, "prism to listen")
    c.ok(prism.alive(), "prism is running")
    prism_url = f"http://127.0.0.1:{prism_port}"
    self_check(c, prism_url)
    prism_log_start = len(prism.text())

    relay = Relay(prism_url)
    port = harness.free_port()
    server = Proc("verif8-grpc", [args.bin, "--listen", f"127.0.0.1:{port}", "--upstream-url", relay.url,
                                  "--api-key", API_KEY, "--subaccount", SUBACCOUNT], env=harness.clean_env())
    state["procs"].append(server)
    g = Grpcurl(args.grpcurl, f"localhost:{port}")
    harness.wait_for(lambda: not server.alive() or g.serving(), 60, "verif8-grpc health SERVING")
    c.ok(server.alive(), "verif8-grpc is running")

    session_id = None
    for channel, (request, body) in STARTS.items():
        n = len(relay.exchanges)
        session = g.call(f"{VS}/StartVerification", request)["session"]
        x = expect_exchange(c, relay.since(n), f"StartVerification {channel}", "POST", SESSIONS)
        sent = dict(x["body"])
        dest = sent.pop("destination", "")
        c.equal(re.sub(r"\D", "", dest), "6598765432", f"StartVerification {channel}: destination digits")
        c.equal(sent, {**COMMON_BODY, **body}, f"StartVerification {channel}: JSON body")
        session_id = session["sessionId"]

    n = len(relay.exchanges)
    got = g.call(f"{VS}/GetSession", {"sessionId": session_id})["session"]
    x = expect_exchange(c, relay.since(n), "GetSession", "GET", f"{SESSIONS}/{session_id}")
    c.equal(x["query"], {}, "GetSession: no query (never a code)")
    c.equal(got["sessionId"], session_id, "GetSession: session")

    n = len(relay.exchanges)
    g.call(f"{VS}/CheckCode", {"sessionId": session_id, "code": "123456"})
    x = expect_exchange(c, relay.since(n), "CheckCode", "GET", f"{SESSIONS}/{session_id}")
    c.equal(x["query"], {"code": ["123456"]}, "CheckCode: the code in the query")

    n = len(relay.exchanges)
    cov = g.call(f"{VS}/CheckSmaCoverage", {"clientIp": "203.0.113.7", "destination": "+6598765432",
                                            "country": "SG"})
    x = expect_exchange(c, relay.since(n), "CheckSmaCoverage", "POST", f"/api/v2/subaccounts/{SUBACCOUNT}/sma/coverage")
    c.equal({k: v for k, v in x["body"].items() if k != "destination"}, {"clientIp": "203.0.113.7", "country": "SG"},
            "CheckSmaCoverage: JSON body")
    c.equal(cov, {"available": True}, "CheckSmaCoverage: prism's isAvailable mapped")

    # Prism's own account of the same requests: each received, none with a violation.
    log = prism.text()[prism_log_start:]
    c.equal(log.count("Request received"), len(relay.exchanges), "prism logged every relayed request")
    violations = [line for line in log.splitlines() if "Violation" in line or "did not pass" in line]
    c.ok(not violations, "prism's log shows no request violations", "\n".join(violations))


def main():
    args = parse_args()
    state = {"procs": [], "tmp": tempfile.TemporaryDirectory(prefix="conformance-")}

    def cleanup(dump_logs):
        for p in reversed(state["procs"]):
            p.stop(dump_log=dump_logs)
        state["tmp"].cleanup()

    Checks("conformance").run(lambda c: conformance(c, args, state), cleanup)


if __name__ == "__main__":
    main()
