#!/usr/bin/env node
// Demo of the Node.js client against a running venue (`mock-venue serve`):
//
//   node demo.js --command tcp://127.0.0.1:5555 --events tcp://127.0.0.1:5556 --strategy node-1
//
// Against a server with a key add --server-public-key server.key --client-key node-1.key_secret (or set
// ORDERBUS_SERVER_KEY and ORDERBUS_CLIENT_KEY).
//
// 1. connects and syncs;
// 2. submits a limit order on an instrument that fills at once (--fill-instrument), waits for
//    its ack and for its fill(s) on the event stream;
// 3. submits a limit order on a resting (manual-fill) instrument (--rest-instrument), waits for
//    its ack, cancels it, and waits for the CANCELED report;
// 4. with --heartbeats N, waits for the next N heartbeats (they come on the strategy's own topic
//    and number its stream only);
// 5. prints one JSON line summarising what it saw. Exit code 0 on success; 1 on a failure or a
//    timeout (with {"ok": false, "error": ...} on stdout and the message on stderr); 2 on bad
//    arguments. Every wait has a deadline (--timeout seconds each, --deadline overall).

import { parseArgs } from "node:util";

import { Decimal, OrderBusClient, TERMINAL_STATUSES, loadKeys } from "./orderbus.js";

const USAGE = `usage: node demo.js --command ENDPOINT --events ENDPOINT [options]

  --command ENDPOINT        the venue's command endpoint (ROUTER), e.g. tcp://127.0.0.1:5555
  --events ENDPOINT         the venue's event endpoint (PUB), e.g. tcp://127.0.0.1:5556
  --strategy ID             strategy id (default node-1)
  --fill-instrument SYM     an instrument that fills immediately (default INITECH)
  --fill-qty QTY            its quantity, whole lots (default 10)
  --fill-price PX           its limit price, whole ticks (default 10.00)
  --rest-instrument SYM     an instrument whose orders rest (manual fills) (default HOOLI)
  --rest-qty QTY            (default 10)
  --rest-price PX           (default 49.50)
  --server-public-key FILE  the server's public key (NAME.key) for CURVE (env ORDERBUS_SERVER_KEY;
                            --server-key is the same)
  --client-key FILE         this client's secret key (NAME.key_secret) (env ORDERBUS_CLIENT_KEY)
  --heartbeats N            at the end, wait for N heartbeats of the strategy (default 0)
  --timeout SECONDS         deadline of each wait (default 10)
  --deadline SECONDS        deadline of the whole run (default 60)`;

function usage(message) {
  process.stderr.write(`demo.js: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      command: { type: "string" },
      events: { type: "string" },
      strategy: { type: "string", default: "node-1" },
      "fill-instrument": { type: "string", default: "INITECH" },
      "fill-qty": { type: "string", default: "10" },
      "fill-price": { type: "string", default: "10.00" },
      "rest-instrument": { type: "string", default: "HOOLI" },
      "rest-qty": { type: "string", default: "10" },
      "rest-price": { type: "string", default: "49.50" },
      "server-public-key": { type: "string" },
      "server-key": { type: "string" },
      "client-key": { type: "string" },
      heartbeats: { type: "string", default: "0" },
      timeout: { type: "string", default: "10" },
      deadline: { type: "string", default: "60" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  }));
} catch (error) {
  usage(error.message);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (!args.command || !args.events) usage("--command and --events are required");
const waitMs = Number(args.timeout) * 1000;
const deadlineMs = Number(args.deadline) * 1000;
if (!(waitMs > 0) || !(deadlineMs > 0)) usage("--timeout and --deadline must be positive numbers");
const heartbeatsWanted = Number(args.heartbeats);
if (!Number.isInteger(heartbeatsWanted) || heartbeatsWanted < 0) {
  usage("--heartbeats must be a whole number");
}
for (const name of ["fill-qty", "fill-price", "rest-qty", "rest-price"]) {
  try {
    Decimal.parse(args[name]);
  } catch {
    usage(`--${name} is not a decimal: ${args[name]}`);
  }
}
let keys;
try {
  keys = loadKeys({ serverKey: args["server-public-key"] ?? args["server-key"], clientKey: args["client-key"] });
} catch (error) {
  usage(error.message);
}

const started = Date.now();
let client = null;
let finished = false;

function finish(code, line, message) {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  if (message) process.stderr.write(`demo.js: ${message}\n`);
  process.stdout.write(`${JSON.stringify(line)}\n`, () => {
    const closing = client ? client.close() : Promise.resolve();
    // close() never blocks (LINGER 0), but do not let it hold the exit either.
    Promise.race([closing, new Promise((r) => setTimeout(r, 1000))]).finally(() =>
      process.exit(code),
    );
  });
}

const watchdog = setTimeout(() => {
  finish(
    1,
    { ok: false, error: `overall deadline of ${args.deadline} s passed` },
    `overall deadline of ${args.deadline} s passed`,
  );
}, deadlineMs);

/** Await `promise`, or fail with `what` after the per-wait deadline. */
function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${args.timeout} s: ${what}`)), waitMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next `count` heartbeats. */
function nextHeartbeats(c, count) {
  return new Promise((resolve) => {
    const seen = [];
    const onHeartbeat = (body) => {
      seen.push(body);
      if (seen.length < count) return;
      c.off("heartbeat", onHeartbeat);
      resolve(seen);
    };
    c.on("heartbeat", onHeartbeat);
  });
}

function describeAck(ack) {
  return {
    action: ack.action,
    status: ack.order.status,
    cum_qty: ack.order.cum_qty.toString(),
    leaves_qty: ack.order.leaves_qty.toString(),
    last_seq: ack.order.last_seq,
    venue_order_id: ack.order.venue_order_id,
  };
}

function describeOrder(c, clientOrderId, instrument, acks) {
  const reports = c.reportsFor(clientOrderId);
  const last = reports.at(-1);
  return {
    instrument,
    acks,
    exec_types: reports.map((r) => r.exec_type),
    statuses: reports.map((r) => r.status),
    seqs: reports.map((r) => r.seq),
    fill_ids: reports.filter((r) => r.exec_type === "trade").map((r) => r.fill_id),
    status: last?.status ?? null,
    cum_qty: last ? last.cum_qty.toString() : null,
    leaves_qty: last ? last.leaves_qty.toString() : null,
    avg_px: last?.avg_px ? last.avg_px.toString() : null,
  };
}

async function main() {
  client = new OrderBusClient({
    command: args.command,
    events: args.events,
    strategyId: args.strategy,
    requestTimeout: waitMs,
    ...keys,
  });
  const problems = [];
  client.on("error", (error) => problems.push(error.message));
  await client.connect();

  const sync = await client.sync({ timeout: waitMs });

  // client_order_ids are unique per strategy for ever: derive them from this run's client id.
  const prefix = `node-${client.clientId.slice(0, 12)}`;
  const fillId = `${prefix}-fill`;
  const restId = `${prefix}-rest`;

  // --- 1. An order that fills at once: its ack, then its fill(s) on the stream. ---------------
  const fillAck = await within(
    client.submit({
      clientOrderId: fillId,
      instrument: args["fill-instrument"],
      side: "buy",
      quantity: args["fill-qty"],
      orderType: "limit",
      limitPrice: args["fill-price"],
      timeInForce: "day",
    }),
    `the ack of ${fillId}`,
  );
  if (fillAck.action !== "submit") throw new Error(`${fillId}: ack action ${fillAck.action}`);
  const fillEnd = await client.waitForReport(
    (r) => r.client_order_id === fillId && TERMINAL_STATUSES.has(r.status),
    { timeout: waitMs, what: `a terminal report of ${fillId} on ${args["fill-instrument"]}` },
  );
  if (fillEnd.status !== "filled") {
    throw new Error(
      `${fillId} ended ${fillEnd.status} (${fillEnd.exec_type}` +
        `${fillEnd.text ? `: ${fillEnd.text}` : ""}), not filled: ` +
        `is ${args["fill-instrument"]} an immediately-filled instrument?`,
    );
  }
  if (!fillEnd.cum_qty.eq(args["fill-qty"])) {
    throw new Error(`${fillId} filled ${fillEnd.cum_qty}, not ${args["fill-qty"]}`);
  }

  // --- 2. A resting order: ack, cancel, the CANCELED report. ----------------------------------
  const restAck = await within(
    client.submit({
      clientOrderId: restId,
      instrument: args["rest-instrument"],
      side: "buy",
      quantity: args["rest-qty"],
      orderType: "limit",
      limitPrice: args["rest-price"],
      timeInForce: "gtc",
    }),
    `the ack of ${restId}`,
  );
  if (TERMINAL_STATUSES.has(restAck.order.status)) {
    throw new Error(
      `${restId} is already ${restAck.order.status} at its ack: ` +
        `is ${args["rest-instrument"]} a resting (manual-fill) instrument?`,
    );
  }
  const cancelAck = await within(client.cancel(restId), `the ack of the cancel of ${restId}`);
  if (cancelAck.action !== "cancel") throw new Error(`${restId}: ack action ${cancelAck.action}`);
  const canceled = await client.waitForReport(
    (r) => r.client_order_id === restId && TERMINAL_STATUSES.has(r.status),
    { timeout: waitMs, what: `the CANCELED report of ${restId}` },
  );
  if (canceled.exec_type !== "canceled") {
    throw new Error(`${restId} ended with ${canceled.exec_type} (${canceled.status}), not canceled`);
  }

  // --- 3. Heartbeats, on the strategy's own topic. --------------------------------------------
  const heartbeats =
    heartbeatsWanted > 0
      ? await within(nextHeartbeats(client, heartbeatsWanted), `${heartbeatsWanted} heartbeat(s)`)
      : [];

  return {
    ok: true,
    strategy: args.strategy,
    client_id: client.clientId,
    session: sync.session,
    instance: sync.instance,
    baseline_seq: sync.seq,
    delivered_seq: client.delivered,
    latest_seq: client.latest,
    orders: {
      [fillId]: {
        role: "fill",
        ...describeOrder(client, fillId, args["fill-instrument"], [describeAck(fillAck)]),
      },
      [restId]: {
        role: "cancel",
        ...describeOrder(client, restId, args["rest-instrument"], [
          describeAck(restAck),
          describeAck(cancelAck),
        ]),
      },
    },
    events: {
      live: client.stats.live,
      replayed: client.stats.replayed,
      duplicates: client.stats.duplicates,
      replay_requests: client.stats.replayRequests,
      heartbeats: client.stats.heartbeats,
      heartbeat_seqs: heartbeats.map((h) => h.seqs), // those --heartbeats waited for
    },
    problems,
    elapsed_ms: Date.now() - started,
  };
}

main().then(
  (summary) => finish(0, summary),
  (error) => {
    const reason = error?.reason ? ` [${error.reason}]` : "";
    const message = `${error?.message ?? error}${reason}`;
    finish(1, { ok: false, error: message, elapsed_ms: Date.now() - started }, message);
  },
);
