#!/usr/bin/env node
// A Node.js client for sgw's gRPC control plane, using @grpc/grpc-js and
// @grpc/proto-loader on the repository's proto/ files (no generated code).
// The client is `new Client("unix:" + path, createInsecure())` with
// grpc-js's default options: no authority override.
//
//   npm install @grpc/grpc-js @grpc/proto-loader
//   node examples/node_client.mjs [--socket PATH] [--child ID] [--events N]
//
// Prints one JSON object per line: GetInfo, GetState, PauseChild then
// ResumeChild on --child (default: the first child), an error example, and
// the first N events of SubscribeEvents with include_backlog.

import path from "node:path";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const PROTO_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "sgw-api", "proto");

/** $SGW_SOCKET, else $XDG_RUNTIME_DIR/sgw/sgw.sock, else /tmp/sgw-$UID/sgw.sock. */
function defaultSocket() {
  if (process.env.SGW_SOCKET) return process.env.SGW_SOCKET;
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && path.isAbsolute(runtime)) return path.join(runtime, "sgw", "sgw.sock");
  return `/tmp/sgw-${os.userInfo().uid}/sgw.sock`;
}

const { values: args } = parseArgs({
  options: {
    socket: { type: "string", default: defaultSocket() },
    child: { type: "string" },
    events: { type: "string", default: "5" },
  },
});

const definition = protoLoader.loadSync(
  [
    "supervisor/gateway/v1/control_service.proto",
    "supervisor/gateway/v1/journal_service.proto",
  ],
  {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the proto: child_id, after_sequence
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true, // event.detail names the set field
  },
);
const v1 = grpc.loadPackageDefinition(definition).supervisor.gateway.v1;

const address = "unix:" + args.socket;
const credentials = grpc.credentials.createInsecure();
const control = new v1.ControlService(address, credentials);
const journal = new v1.JournalService(address, credentials);

function emit(call, fields) {
  console.log(JSON.stringify({ call, ...fields }));
}

/** A unary call as a promise, with a deadline. */
function unary(client, method, request) {
  const deadline = new Date(Date.now() + 30_000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** Reads `count` events (backlog first), then cancels the stream. */
function firstEvents(count) {
  return new Promise((resolve, reject) => {
    const stream = journal.SubscribeEvents({ include_backlog: true });
    let received = 0;
    stream.on("data", (item) => {
      // The first message names the journal (send it back to resume).
      if (item.item === "start") return;
      if (item.item === "gap") {
        emit("SubscribeEvents", { gap: item.gap });
        return;
      }
      const event = item.event;
      emit("SubscribeEvents", {
        sequence: event.sequence,
        event_type: event.event_type,
        child_id: event.child_id,
        detail: event.detail,
      });
      received += 1;
      if (received === count) {
        stream.cancel();
        resolve();
      }
    });
    stream.on("error", (error) => {
      // Our own cancel ends the stream with CANCELLED.
      if (error.code === grpc.status.CANCELLED && received >= count) resolve();
      else reject(error);
    });
    stream.on("end", () => (received >= count ? resolve() : reject(new Error("stream ended early"))));
  });
}

async function main() {
  const info = await unary(control, "GetInfo", {});
  emit("GetInfo", {
    target_id: info.target_id,
    protocol_version: info.protocol_version,
    server_version: info.server_version,
    caller_uid: info.caller.uid,
    caller_pid: info.caller.pid,
  });

  const state = await unary(control, "GetState", {});
  emit("GetState", {
    children: state.children.map((c) => ({ child_id: c.child_id, state: c.state })),
    last_event_sequence: state.last_event_sequence,
  });

  const child = args.child ?? state.children[0].child_id;
  const meta = { reason: "node example", request_id: "" };
  for (const method of ["PauseChild", "ResumeChild"]) {
    const { result } = await unary(control, method, { child_id: child, meta });
    emit(method, {
      child_id: child,
      command_id: result.command_id,
      outcome: result.outcome,
      state: result.child.state,
    });
  }

  try {
    await unary(control, "GetChild", { child_id: "no-such-child" });
    emit("GetChild", { code: "OK" });
  } catch (error) {
    const code = Object.keys(grpc.status).find((name) => grpc.status[name] === error.code);
    emit("GetChild", { code, message: error.details });
  }

  await firstEvents(Number(args.events));
}

main()
  .then(() => {
    control.close();
    journal.close();
  })
  .catch((error) => {
    console.error(`error: ${error.code !== undefined ? `code ${error.code}: ` : ""}${error.details ?? error.message}`);
    process.exit(1);
  });
