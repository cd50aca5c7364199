"""A Python client of verif8-grpc against its sandbox: start a verification, watch the session,
read the code the sandbox "sent", check a wrong code and the right one, and see the watch report
each change and end OK. Every step is checked; any failure exits 1 saying which.

    pip install grpcio grpcio-tools     (the tests use the pins in scripts/tools/requirements.txt)
    python verify.py --target 127.0.0.1:50051     (a verif8-grpc in sandbox mode)

The stubs are generated with grpcio-tools at start-up, into a temporary directory, from
../../proto unless --proto names another directory.
"""

import argparse
import pathlib
import queue
import subprocess
import sys
import tempfile
import threading
import traceback

import grpc

TIMEOUT = 10  # seconds, for each call and each awaited message


class Failure(Exception):
    pass


passed = 0


def check(actual, expected, what):
    global passed
    if actual != expected:
        raise Failure(f"{what}\n  got  {actual!r}\n  want {expected!r}")
    passed += 1
    print(f"  ok  {what}: {expected!r}", flush=True)


def generate_stubs(proto_dir, out_dir):
    """verif8/v1/*_pb2.py and *_pb2_grpc.py, with the well-known types grpc_tools ships."""
    protos = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos],
        check=True,
    )
    sys.path.insert(0, str(out_dir))


def run(target):
    from verif8.v1 import sandbox_pb2, sandbox_pb2_grpc, verification_pb2 as v, verification_pb2_grpc

    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    except grpc.FutureTimeoutError:
        raise Failure(f"no connection to {target} within {TIMEOUT} s") from None
    service = verification_pb2_grpc.VerificationServiceStub(channel)
    sandbox = sandbox_pb2_grpc.SandboxServiceStub(channel)

    session = service.StartVerification(v.StartVerificationRequest(destination="+6598765432"),
                                        timeout=TIMEOUT).session
    check(v.SessionStatus.Name(session.status), "SESSION_STATUS_WAITING", "started session status")

    # The watcher runs in its own thread, handing each message over as it arrives, then how the
    # stream ended.
    events = queue.Queue()
    call = service.WatchSession(v.WatchSessionRequest(session_id=session.session_id))

    def pump():
        try:
            for event in call:
                events.put(event)
            events.put(("end", "OK"))
        except grpc.RpcError as error:
            events.put(("end", error.code().name))

    threading.Thread(target=pump, daemon=True).start()

    def next_event(what):
        try:
            return events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise Failure(f"timed out after {TIMEOUT} s waiting for {what}") from None

    def summary(event):
        """The fields of a WatchSession message this client checks."""
        return (v.WatchEventKind.Name(event.kind), v.SessionStatus.Name(event.session.status),
                v.SessionStatus.Name(event.previous_status),
                v.ObservationSource.Name(event.source), event.session.attempt)

    check(summary(next_event("the first WatchSession message")),
          ("WATCH_EVENT_KIND_SNAPSHOT", "SESSION_STATUS_WAITING", "SESSION_STATUS_UNSPECIFIED",
           "OBSERVATION_SOURCE_POLL", 0), "first event")

    messages = sandbox.ListMessages(sandbox_pb2.ListMessagesRequest(session_id=session.session_id),
                                    timeout=TIMEOUT).messages
    check(len(messages), 1, "messages delivered")
    code = messages[0].code
    wrong = "0000" if code != "0000" else "1111"

    after = service.CheckCode(v.CheckCodeRequest(session_id=session.session_id, code=wrong),
                              timeout=TIMEOUT).session
    check((v.SessionStatus.Name(after.status), after.attempt), ("SESSION_STATUS_WAITING", 1),
          "CheckCode with a wrong code")
    check(summary(next_event("the event after a wrong code")),
          ("WATCH_EVENT_KIND_CHANGED", "SESSION_STATUS_WAITING", "SESSION_STATUS_WAITING",
           "OBSERVATION_SOURCE_CHECK_CODE", 1), "event after a wrong code")

    after = service.CheckCode(v.CheckCodeRequest(session_id=session.session_id, code=code),
                              timeout=TIMEOUT).session
    check(v.SessionStatus.Name(after.status), "SESSION_STATUS_VERIFIED", "CheckCode with the right code")
    check(summary(next_event("the event after the right code")),
          ("WATCH_EVENT_KIND_CHANGED", "SESSION_STATUS_VERIFIED", "SESSION_STATUS_WAITING",
           "OBSERVATION_SOURCE_CHECK_CODE", 1), "event after the right code")
    check(next_event("the end of the stream"), ("end", "OK"),
          "the stream ends with status OK after VERIFIED")

    # An unknown session: NOT_FOUND before any message.
    received = []
    try:
        for event in service.WatchSession(
                v.WatchSessionRequest(session_id="0123456789abcdef0123456789abcdef"), timeout=TIMEOUT):
            received.append(event)
        status = "OK"
    except grpc.RpcError as error:
        status = error.code().name
    check(len(received), 0, "messages for an unknown session")
    check(status, "NOT_FOUND", "watching an unknown session fails with")
    channel.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="verif8-grpc's address (host:port)")
    parser.add_argument("--proto", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parents[2] / "proto",
                        help="directory holding verif8/v1/*.proto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="verif8-py-") as stubs:
        generate_stubs(args.proto.resolve(), stubs)
        try:
            run(args.target)
        except Failure as failure:
            print(f"\nFAILED: {failure}", file=sys.stderr)
            print(f"python example: {passed} passed, 1 failed", file=sys.stderr)
            sys.exit(1)
        except Exception:  # e.g. a failed call (grpc.RpcError): where, with its status
            print("\nFAILED:", file=sys.stderr)
            traceback.print_exc()
            print(f"python example: {passed} passed, 1 failed", file=sys.stderr)
            sys.exit(1)
    print(f"python example: {passed} passed, 0 failed")


if __name__ == "__main__":
    main()
