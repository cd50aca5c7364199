"""Shared plumbing of the end-to-end scripts: processes, ports, grpcurl, check counting.

Standard library only, so the scripts run with any Python 3.11 (test.sh uses .tools/venv's).
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback


class CheckFailed(Exception):
    pass


class Checks:
    """Counts named checks and ends the run with a 'N passed, N failed' line (read by CI)."""

    def __init__(self, name):
        self.name = name
        self.passed = 0

    def ok(self, cond, what, detail=""):
        if not cond:
            raise CheckFailed(f"{what}\n{detail}".rstrip())
        self.passed += 1
        print(f"  ok  {what}", flush=True)

    def equal(self, actual, expected, what):
        detail = f"got {actual!r}"
        if isinstance(actual, dict) and isinstance(expected, dict):  # name the keys that differ
            detail += "".join(f"\n  {k}: got {actual.get(k, '<absent>')!r}, want {expected.get(k, '<absent>')!r}"
                              for k in sorted(actual.keys() | expected.keys()) if actual.get(k) != expected.get(k))
        self.ok(actual == expected, f"{what} == {expected!r}", detail)

    def run(self, body, cleanup):
        """Runs body(self); on any failure prints why and the logs, then exits 1."""
        try:
            body(self)
        except CheckFailed as e:
            print(f"\nFAILED: {e}", file=sys.stderr)
            return self._end(cleanup, failed=1)
        except KeyboardInterrupt:
            cleanup(dump_logs=False)  # our children run in their own sessions: stop them too
            raise
        except Exception:  # a crash in the script itself is a failure too, with its traceback
            print(f"\nFAILED (error in {self.name}):", file=sys.stderr)
            traceback.print_exc()
            return self._end(cleanup, failed=1)
        return self._end(cleanup, failed=0)

    def _end(self, cleanup, failed):
        cleanup(dump_logs=bool(failed))
        print(f"{self.name}: {self.passed} passed, {failed} failed", flush=True)
        sys.exit(1 if failed else 0)


def free_port():
    """A loopback port nobody listens on now (the kernel's pick; released before use)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise CheckFailed(f"timed out after {timeout}s waiting for {what}")


class Proc:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.argv = argv
        # start_new_session: our own process group, so stopping it also stops npm/node children.
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def alive(self):
        return self.popen.poll() is None

    def text(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return re.sub(r"\x1b\[[0-9;]*m", "", f.read())  # without terminal colours

    def stop(self, dump_log=False):
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if dump_log:  # keep the log for a post-mortem
            tail = "\n".join(self.text().splitlines()[-60:])
            print(f"\n--- last lines of {self.name} log ({self.log.name}) ---\n{tail}", file=sys.stderr)
        elif os.path.exists(self.log.name):  # stop() may be called twice
            os.unlink(self.log.name)


def clean_env(**extra):
    """The current environment without VERIF8_* (so a developer's settings can't leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIF8_")}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


class Grpcurl:
    """Runs the real grpcurl binary against one address, plaintext."""

    def __init__(self, binary, addr):
        self.binary = binary
        self.addr = addr

    def argv(self, *args, data=None):
        """grpcurl's argv as a user would type it: flags, -d JSON, address, then the rest."""
        argv = ["grpcurl", "-plaintext"]
        if data is not None:
            argv += ["-d", json.dumps(data)]
        return argv + [self.addr, *args]

    def run(self, argv, timeout=30):
        """Runs argv (argv[0] is replaced by the real binary); returns (exit code, stdout+stderr)."""
        p = subprocess.run([self.binary, *argv[1:]], capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def call(self, method, data):
        """A unary call that must succeed; returns the decoded JSON answer."""
        argv = self.argv(method, data=data)
        code, out = self.run(argv)
        if code != 0:
            raise CheckFailed(f"`{shlex.join(argv)}` exited {code}:\n{out}")
        return json.loads(out)

    def serving(self):
        code, out = self.run(self.argv("grpc.health.v1.Health/Check"), timeout=5)
        return code == 0 and '"SERVING"' in out
