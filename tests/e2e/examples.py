"""Runs one of the clients in examples/ against the real binary in sandbox mode: starts
verif8-grpc on a free port, waits until grpc.health.v1 answers SERVING, runs the example with
--target, and passes when the example exits 0 (its own checks are the test).

Run by scripts/test.sh:
    examples.py --bin target/debug/verif8-grpc --grpcurl .tools/bin/grpcurl --example node
"""

import argparse
import pathlib
import subprocess
import sys

from harness import Checks, Grpcurl, Proc, clean_env, free_port, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 120  # seconds for the whole example


def command(example, target):
    """The example's command line, as its header tells a user to type it."""
    if example == "node":
        return ["node", str(EXAMPLES / "node" / "verify.js"), "--target", target]
    return [sys.executable, str(EXAMPLES / "python" / "verify.py"), "--target", target]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--grpcurl", required=True, help="for the health check")
    parser.add_argument("--example", required=True, choices=["node", "python"])
    args = parser.parse_args()

    port = free_port()
    target = f"127.0.0.1:{port}"
    server = Proc("verif8-grpc", [args.bin, "--listen", target], env=clean_env())

    def body(check):
        if args.example == "node":
            check.ok((EXAMPLES / "node" / "node_modules" / "@grpc" / "grpc-js").is_dir(),
                     "examples/node's dependencies are installed",
                     "run scripts/setup-tools.sh (npm ci --prefix examples/node)")
        grpcurl = Grpcurl(args.grpcurl, target)
        wait_for(lambda: server.alive() and grpcurl.serving(), 60, "the server to report SERVING")
        check.ok(True, f"verif8-grpc serving on {target}")

        argv = command(args.example, target)
        print(f"  $ {' '.join(argv)}", flush=True)
        try:
            code = subprocess.run(argv, cwd=ROOT, env=clean_env(), timeout=TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            check.ok(False, f"the {args.example} example finishes within {TIMEOUT} s")
        check.equal(code, 0, f"the {args.example} example's exit code")
        check.ok(server.alive(), "verif8-grpc still running after the example")

    Checks(f"{args.example}_example").run(body, lambda dump_logs: server.stop(dump_log=dump_logs))


if __name__ == "__main__":
    main()
