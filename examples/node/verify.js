// A Node client of verif8-grpc against its sandbox: start a verification, watch the session,
// read the code the sandbox "sent", check a wrong code and the right one, and see the watch
// report each change and end OK. Every step is asserted; any failure exits 1 saying which.
//
//   npm ci                                       (once, in this directory)
//   node verify.js --target 127.0.0.1:50051      (a verif8-grpc in sandbox mode)
//
// The .proto files are loaded at run time with @grpc/proto-loader (no generated code), from
// ../../proto unless --proto names another directory.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: "127.0.0.1:50051" },
    proto: { type: "string", default: fileURLToPath(new URL("../../proto", import.meta.url)) },
  },
});

const TIMEOUT_MS = 10_000;
let passed = 0;

// check(actual, expected, what): a deep strict equality, named in the output.
function check(actual, expected, what) {
  try {
    assert.deepEqual(actual, expected);
  } catch (error) {
    throw new Error(`${what}\n${error.message}`);
  }
  passed += 1;
  console.log(`  ok  ${what}: ${JSON.stringify(expected)}`);
}

// A unary call as a promise, with a deadline.
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + TIMEOUT_MS }, (error, response) =>
      error ? reject(new Error(`${method} failed: ${error.message}`)) : resolve(response),
    );
  });
}

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms waiting for ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The fields of a WatchSession message this client asserts on.
function summary(event) {
  return [event.kind, event.session.status, event.previous_status, event.source, event.session.attempt];
}

async function main() {
  // keepCase: field names as in the .proto (session_id); enums as their names; defaults: unset
  // fields read as their zero value (previous_status SESSION_STATUS_UNSPECIFIED, attempt 0).
  const definition = protoLoader.loadSync(["verif8/v1/verification.proto", "verif8/v1/sandbox.proto"], {
    includeDirs: [args.proto],
    keepCase: true,
    enums: String,
    longs: String,
    defaults: true,
    oneofs: true,
  });
  const { verif8 } = grpc.loadPackageDefinition(definition);
  const credentials = grpc.credentials.createInsecure();
  const verification = new verif8.v1.VerificationService(args.target, credentials);
  const sandbox = new verif8.v1.SandboxService(args.target, credentials);

  await new Promise((resolve, reject) =>
    verification.waitForReady(Date.now() + TIMEOUT_MS, (error) =>
      error ? reject(new Error(`no connection to ${args.target}: ${error.message}`)) : resolve(),
    ),
  );

  const { session } = await unary(verification, "StartVerification", { destination: "+6598765432" });
  check(session.status, "SESSION_STATUS_WAITING", "started session status");

  // The watch: read its messages one by one; the 'status' event carries how the stream ended.
  const watch = verification.WatchSession({ session_id: session.session_id });
  const ended = new Promise((resolve) => watch.on("status", resolve));
  const messages = watch[Symbol.asyncIterator]();
  const nextEvent = async (what) => {
    const { value, done } = await within(messages.next(), what);
    return done ? "end" : value;
  };

  check(
    summary(await nextEvent("the first WatchSession message")),
    ["WATCH_EVENT_KIND_SNAPSHOT", "SESSION_STATUS_WAITING", "SESSION_STATUS_UNSPECIFIED", "OBSERVATION_SOURCE_POLL", 0],
    "first event",
  );

  const outbox = await unary(sandbox, "ListMessages", { session_id: session.session_id });
  check(outbox.messages.length, 1, "messages delivered");
  const code = outbox.messages[0].code;
  const wrong = code !== "0000" ? "0000" : "1111";

  const afterWrong = await unary(verification, "CheckCode", { session_id: session.session_id, code: wrong });
  check([afterWrong.session.status, afterWrong.session.attempt], ["SESSION_STATUS_WAITING", 1], "CheckCode with a wrong code");
  check(
    summary(await nextEvent("the event after a wrong code")),
    ["WATCH_EVENT_KIND_CHANGED", "SESSION_STATUS_WAITING", "SESSION_STATUS_WAITING", "OBSERVATION_SOURCE_CHECK_CODE", 1],
    "event after a wrong code",
  );

  const afterRight = await unary(verification, "CheckCode", { session_id: session.session_id, code });
  check(afterRight.session.status, "SESSION_STATUS_VERIFIED", "CheckCode with the right code");
  check(
    summary(await nextEvent("the event after the right code")),
    ["WATCH_EVENT_KIND_CHANGED", "SESSION_STATUS_VERIFIED", "SESSION_STATUS_WAITING", "OBSERVATION_SOURCE_CHECK_CODE", 1],
    "event after the right code",
  );
  check(await nextEvent("the end of the stream"), "end", "no message after VERIFIED");
  check(grpc.status[(await within(ended, "the stream's status")).code], "OK", "the stream ends with status");

  // An unknown session: NOT_FOUND before any message.
  const received = [];
  let failure = null;
  const readAll = async () => {
    try {
      for await (const message of verification.WatchSession({ session_id: "0123456789abcdef0123456789abcdef" })) {
        received.push(message);
      }
    } catch (error) {
      failure = error;
    }
  };
  await within(readAll(), "the unknown session's watch to end");
  check(received.length, 0, "messages for an unknown session");
  check(grpc.status[failure?.code], "NOT_FOUND", "watching an unknown session fails with");

  verification.close();
  sandbox.close();
  console.log(`node example: ${passed} passed, 0 failed`);
}

main().catch((error) => {
  console.error(`\nFAILED: ${error.message}`);
  console.error(`node example: ${passed} passed, 1 failed`);
  process.exit(1);
});
