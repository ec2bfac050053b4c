#!/usr/bin/env python3
"""A Python client for sgw's gRPC control plane, using plain grpcio.

Stubs are generated from the repository's proto/ files into a temporary
directory at start (grpcio-tools), so nothing generated is checked in. The
channel is `grpc.insecure_channel("unix:" + path)` with grpcio's default
options: no authority override.

    pip install grpcio grpcio-tools
    python3 examples/python_client.py [--socket PATH] [--child ID] [--events N]

Prints one JSON object per line: GetInfo, GetState, PauseChild then
ResumeChild on --child (default: the first child), an error example, and the
first N events of SubscribeEvents with include_backlog.
"""

import argparse
import importlib.resources
import json
import os
import sys
import tempfile
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent.parent.parent / "sgw-api" / "proto"
PACKAGE_DIR = PROTO_ROOT / "supervisor" / "gateway" / "v1"


def default_socket():
    """$SGW_SOCKET, else $XDG_RUNTIME_DIR/sgw/sgw.sock, else /tmp/sgw-$UID/sgw.sock."""
    explicit = os.environ.get("SGW_SOCKET")
    if explicit:
        return explicit
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "sgw", "sgw.sock")
    return f"/tmp/sgw-{os.geteuid()}/sgw.sock"


def generate_stubs(out_dir):
    """Runs protoc (bundled with grpcio-tools) on proto/ into out_dir."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    files = sorted(str(p.relative_to(PROTO_ROOT)) for p in PACKAGE_DIR.glob("*.proto"))
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *files,
        ]
    )
    if status != 0:
        sys.exit(f"protoc failed on {PROTO_ROOT} (status {status})")
    sys.path.insert(0, out_dir)


def emit(call, **fields):
    print(json.dumps({"call": call, **fields}), flush=True)


def as_dict(message):
    return MessageToDict(message, preserving_proto_field_name=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=default_socket(), help="the gateway's socket")
    parser.add_argument("--child", help="child to pause and resume (default: the first)")
    parser.add_argument("--events", type=int, default=5, help="events to read, then cancel")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sgw-stubs-") as out_dir:
        generate_stubs(out_dir)
        from supervisor.gateway.v1 import control_service_pb2 as control
        from supervisor.gateway.v1 import control_service_pb2_grpc as control_grpc
        from supervisor.gateway.v1 import journal_service_pb2 as journal
        from supervisor.gateway.v1 import journal_service_pb2_grpc as journal_grpc
        from supervisor.gateway.v1 import types_pb2 as types

        with grpc.insecure_channel("unix:" + args.socket) as channel:
            ctl = control_grpc.ControlServiceStub(channel)
            jnl = journal_grpc.JournalServiceStub(channel)

            info = ctl.GetInfo(control.GetInfoRequest(), timeout=10)
            emit(
                "GetInfo",
                target_id=info.target_id,
                protocol_version=info.protocol_version,
                server_version=info.server_version,
                caller_uid=info.caller.uid,
                caller_pid=info.caller.pid,
            )

            state = ctl.GetState(control.GetStateRequest(), timeout=10)
            emit(
                "GetState",
                children=[
                    {"child_id": c.child_id, "state": types.ChildState.Name(c.state)}
                    for c in state.children
                ],
                last_event_sequence=state.last_event_sequence,
            )

            child = args.child or state.children[0].child_id
            meta = types.CommandMeta(reason="python example", request_id="")
            for name, method, request in [
                ("PauseChild", ctl.PauseChild, control.PauseChildRequest),
                ("ResumeChild", ctl.ResumeChild, control.ResumeChildRequest),
            ]:
                result = method(request(child_id=child, meta=meta), timeout=30).result
                emit(
                    name,
                    child_id=child,
                    command_id=result.command_id,
                    outcome=result.outcome,
                    state=types.ChildState.Name(result.child.state),
                )

            try:
                ctl.GetChild(control.GetChildRequest(child_id="no-such-child"), timeout=10)
                emit("GetChild", code="OK")
            except grpc.RpcError as error:
                emit("GetChild", code=error.code().name, message=error.details())

            # Bounded: the stream follows live forever, so cancel after N events.
            stream = jnl.SubscribeEvents(
                journal.SubscribeEventsRequest(include_backlog=True), timeout=30
            )
            received = 0
            for item in stream:
                if item.HasField("start"):
                    # Which journal the sequences belong to: send it back
                    # as journal_id with after_sequence to resume.
                    continue
                if item.HasField("gap"):
                    emit("SubscribeEvents", gap=as_dict(item.gap))
                    continue
                event = item.event
                emit(
                    "SubscribeEvents",
                    sequence=event.sequence,
                    event_type=types.EventType.Name(event.event_type),
                    child_id=event.child_id,
                    detail=event.WhichOneof("detail"),
                )
                received += 1
                if received >= args.events:
                    stream.cancel()
                    break


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as error:
        sys.exit(f"{error.code().name}: {error.details()}")
