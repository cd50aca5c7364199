"""A polyglot caller: Python stubs generated with grpcio-tools from proto/ watch a session to
VERIFIED, the way a service in another language will use verif8-grpc.

Run by scripts/test.sh: python_client.py --bin target/debug/verif8-grpc
"""

import argparse
import os
import pathlib
import queue
import subprocess
import sys
import tempfile
import threading

from harness import Checks, Proc, clean_env, free_port, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]


def generate_stubs(out_dir):
    """verif8/v1/*_pb2.py and *_pb2_grpc.py from proto/, with the well-known types grpc_tools ships."""
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos],
        check=True,
    )
    sys.path.insert(0, str(out_dir))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    args = parser.parse_args()

    stubs = tempfile.mkdtemp(prefix="verif8-py-")
    generate_stubs(stubs)
    import grpc
    from verif8.v1 import sandbox_pb2, sandbox_pb2_grpc, verification_pb2 as v, verification_pb2_grpc

    port = free_port()
    server = Proc("verif8-grpc", [args.bin, "--listen", f"127.0.0.1:{port}"], env=clean_env())

    def body(check):
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        wait_for(lambda: _ready(grpc, channel), 60, "the server to accept calls")
        service = verification_pb2_grpc.VerificationServiceStub(channel)
        sandbox = sandbox_pb2_grpc.SandboxServiceStub(channel)

        session = service.StartVerification(v.StartVerificationRequest(destination="+6598765432")).session
        check.equal(session.status, v.SESSION_STATUS_WAITING, "started session status")

        # The watcher runs in its own thread, handing each event over as it arrives.
        events = queue.Queue()
        call = service.WatchSession(v.WatchSessionRequest(session_id=session.session_id))

        def pump():
            try:
                for event in call:
                    events.put(event)
                events.put(("end", grpc.StatusCode.OK))
            except grpc.RpcError as error:
                events.put(("end", error.code()))

        threading.Thread(target=pump, daemon=True).start()

        def next_event():
            return events.get(timeout=10)

        def summary(event):
            return (v.WatchEventKind.Name(event.kind), v.SessionStatus.Name(event.session.status),
                    v.SessionStatus.Name(event.previous_status),
                    v.ObservationSource.Name(event.source), event.session.attempt)

        check.equal(summary(next_event()),
                    ("WATCH_EVENT_KIND_SNAPSHOT", "SESSION_STATUS_WAITING", "SESSION_STATUS_UNSPECIFIED",
                     "OBSERVATION_SOURCE_POLL", 0), "first event")

        messages = sandbox.ListMessages(sandbox_pb2.ListMessagesRequest(session_id=session.session_id)).messages
        check.equal(len(messages), 1, "messages delivered")
        code = messages[0].code
        wrong = "0000" if code != "0000" else "1111"

        service.CheckCode(v.CheckCodeRequest(session_id=session.session_id, code=wrong))
        check.equal(summary(next_event()),
                    ("WATCH_EVENT_KIND_CHANGED", "SESSION_STATUS_WAITING", "SESSION_STATUS_WAITING",
                     "OBSERVATION_SOURCE_CHECK_CODE", 1), "event after a wrong code")

        service.CheckCode(v.CheckCodeRequest(session_id=session.session_id, code=code))
        check.equal(summary(next_event()),
                    ("WATCH_EVENT_KIND_CHANGED", "SESSION_STATUS_VERIFIED", "SESSION_STATUS_WAITING",
                     "OBSERVATION_SOURCE_CHECK_CODE", 1), "event after the right code")
        check.equal(next_event(), ("end", grpc.StatusCode.OK), "the stream ends OK after VERIFIED")

        try:
            list(service.WatchSession(v.WatchSessionRequest(session_id="0123456789abcdef0123456789abcdef")))
            check.ok(False, "watching an unknown session fails")
        except grpc.RpcError as error:
            check.equal(error.code(), grpc.StatusCode.NOT_FOUND, "unknown session")
        channel.close()

    def cleanup(dump_logs):
        server.stop(dump_log=dump_logs)

    Checks("python_client").run(body, cleanup)


def _ready(grpc, channel):
    try:
        grpc.channel_ready_future(channel).result(timeout=1)
        return True
    except grpc.FutureTimeoutError:
        return False


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
