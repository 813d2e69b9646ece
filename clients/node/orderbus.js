// A minimal client of the orderbus venue, written from docs/protocol.md.
//
//   const client = new OrderBusClient({ command, events, strategyId: "s1" });
//   await client.connect();          // DEALER + SUB, subscribed to S<strategy>\0
//   await client.sync();             // baseline, open orders, session
//   const ack = await client.submit({ clientOrderId, instrument, side, quantity, ... });
//   client.on("execution_report", (report, meta) => ...);   // in order, exactly once
//   await client.cancel(clientOrderId);
//   await client.close();
//
// A server with a key (CURVE): pass `...loadKeys({ serverKey, clientKey })` to the constructor
// (the server's NAME.key and this client's NAME.key_secret; by default from ORDERBUS_SERVER_KEY
// and ORDERBUS_CLIENT_KEY).

import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { Dealer, Subscriber } from "zeromq";

import { Decimal, Timestamp, WireError, decodeEnvelope, encodeRequest } from "./codec.js";

export { Decimal, Timestamp, WireError } from "./codec.js";

/** What answers each request type (3.1). `error` may answer any of them. */
export const REPLY_TYPES = Object.freeze({
  submit_order: "ack",
  amend_order: "ack",
  cancel_order: "ack",
  cancel_all_orders: "cancel_all_ack",
  query_order: "order_snapshot",
  list_open_orders: "open_orders",
  sync: "sync_reply",
  replay: "replay_reply",
});

export const TERMINAL_STATUSES = new Set(["filled", "canceled", "rejected", "expired"]);
export const MAX_REPLAY = 1000;

/** The venue refused a request: an `error` reply (4.5). Branch on `reason`, never `message`. */
export class VenueError extends Error {
  constructor(requestType, body) {
    super(`${requestType} refused: ${body.reason}: ${body.message}`);
    this.name = "VenueError";
    this.reason = body.reason;
    this.outcome = body.outcome ?? "definite";
    this.retryAfter = body.retry_after ?? null;
    this.clientOrderId = body.client_order_id ?? null;
    this.body = body;
  }
}

/** No reply in time: the venue may or may not have done it (4.3). Resend with the same id. */
export class RequestTimeoutError extends Error {
  constructor(requestType, id, timeoutMs) {
    super(`no reply to ${requestType} (id ${id}) within ${timeoutMs} ms: outcome unknown`);
    this.name = "RequestTimeoutError";
    this.outcome = "unknown";
    this.requestType = requestType;
    this.id = id;
  }
}

/** The frame could not be queued (non-blocking send with IMMEDIATE): nothing was sent. */
export class SendError extends Error {
  constructor(requestType, id, cause, refused = null) {
    super(
      `could not send ${requestType} (id ${id}): ${cause?.code ?? cause?.message ?? cause}` +
        (refused ? ` (${refused})` : ""),
    );
    this.name = "SendError";
    this.outcome = "definite";
    this.cause = cause;
  }
}

export class ClosedError extends Error {
  constructor() {
    super("the client is closed");
    this.name = "ClosedError";
  }
}

/** The server refused the security handshake: no request can reach it with these keys. */
export class HandshakeError extends Error {
  constructor(endpoint, cause) {
    super(`cannot connect to ${endpoint}: ${cause}`);
    this.name = "HandshakeError";
    this.outcome = "definite";
  }
}

export class KeyFileError extends Error {
  constructor(message) {
    super(message);
    this.name = "KeyFileError";
  }
}

export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The topic of one strategy's execution reports: "S" + id + NUL (5.1). */
export function strategyTopic(strategyId) {
  return Buffer.concat([Buffer.from("S"), Buffer.from(strategyId, "utf8"), Buffer.from([0])]);
}

// --- CURVE keys ---------------------------------------------------------------------------------

export const SERVER_KEY_ENV = "ORDERBUS_SERVER_KEY";
export const CLIENT_KEY_ENV = "ORDERBUS_CLIENT_KEY";

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/**
 * The keys of a certificate file as pyzmq's `zmq.auth.create_certificates` writes them:
 * `{publicKey, secretKey}` (z85); `secretKey` is null in a public NAME.key.
 */
export function readCertificate(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new KeyFileError(`cannot read the key ${path}: ${error.message}`);
  }
  const key = (name) => text.match(new RegExp(`^\\s*${name}-key\\s*=\\s*"([^"]*)"`, "m"))?.[1];
  const [publicKey, secretKey = null] = [key("public"), key("secret")];
  if (!publicKey || !Z85_KEY.test(publicKey) || (secretKey !== null && !Z85_KEY.test(secretKey))) {
    throw new KeyFileError(`cannot read the key ${path}: not a CURVE certificate`);
  }
  return { publicKey, secretKey };
}

/**
 * The constructor's CURVE options from key files: `serverKey`, the server's public certificate
 * (NAME.key, or its z85 text); `clientKey`, this client's secret certificate (NAME.key_secret).
 * Each one absent is taken from ORDERBUS_SERVER_KEY / ORDERBUS_CLIENT_KEY, as the Python
 * clients do. `{}` (plaintext) when neither is given anywhere.
 */
export function loadKeys({ serverKey, clientKey, env = process.env } = {}) {
  const server = serverKey || env[SERVER_KEY_ENV];
  const client = clientKey || env[CLIENT_KEY_ENV];
  if (!server && !client) return {};
  if (!server || !client) {
    const missing = server ? `clientKey (${CLIENT_KEY_ENV})` : `serverKey (${SERVER_KEY_ENV})`;
    throw new KeyFileError(`no ${missing}: CURVE needs both keys`);
  }
  const serverPublic =
    Z85_KEY.test(server) && !existsSync(server) ? server : readCertificate(server).publicKey;
  const { publicKey, secretKey } = readCertificate(client);
  if (secretKey === null) {
    throw new KeyFileError(`${client} holds no secret key: give the NAME.key_secret file`);
  }
  return { serverKey: serverPublic, publicKey, secretKey };
}

/**
 * Events emitted:
 * - `execution_report` (report, {source: "live" | "replay"}): this strategy's
 *   reports above the sync baseline, in `seq` order, each exactly once;
 * - `heartbeat` (body);
 * - `synced` (syncReply, {resync, newSession});
 * - `replay` ({fromSeq, toSeq}) when a gap is asked for;
 * - `liveness` ("live" | "silent");
 * - `error` (Error) for problems outside any request (only if someone listens).
 */
export class OrderBusClient extends EventEmitter {
  constructor({
    command,
    events,
    strategyId,
    clientId = randomUUID().replaceAll("-", ""),
    requestTimeout = 5000,
    heartbeatInterval = 500,
    liveness = 6,
    replayRetry = 1000,
    historyLimit = 10_000,
    serverKey = null,
    publicKey = null,
    secretKey = null,
  }) {
    super();
    if (!command || !events || !strategyId) {
      throw new TypeError("command, events and strategyId are required");
    }
    const curve = [serverKey, publicKey, secretKey];
    if (curve.some(Boolean) && !curve.every((k) => typeof k === "string" && Z85_KEY.test(k))) {
      throw new TypeError("CURVE needs serverKey, publicKey and secretKey, each 40 z85 characters");
    }
    this.curve = serverKey
      ? { curveServerKey: serverKey, curvePublicKey: publicKey, curveSecretKey: secretKey }
      : null;
    this.handshakeFailure = null; // why the latest handshake failed, until one succeeds
    this.commandEndpoint = command;
    this.eventsEndpoint = events;
    this.strategyId = strategyId;
    this.clientId = clientId;
    this.requestTimeout = requestTimeout;
    this.silenceMs = liveness * heartbeatInterval;
    this.replayRetry = replayRetry;
    this.historyLimit = historyLimit;

    this.nextId = 1; // never reused under this client id (4.2)
    this.pending = new Map(); // id -> {type, resolve, reject, timer}
    this.sendChain = Promise.resolve(); // zeromq.js allows one send at a time

    // Sequencing of the strategy stream (5.6).
    this.synced = false;
    this.delivered = 0; // last seq handed to the application
    this.latest = 0; // highest seq known to exist
    this.buffer = new Map(); // seq -> [report, source], early arrivals
    this.replayOutstanding = null; // {id, sentAt}
    this.session = null;
    this.instance = null;
    this.baseline = null;
    this.resyncing = null;

    this.lastEventAt = 0;
    this.live = false; // a SUB message within the last liveness x interval
    this.wentSilent = false; // was live, then silent: resync when messages resume
    this.closed = false;

    this.history = []; // delivered reports, oldest first
    this.orders = new Map(); // client_order_id -> latest known state
    this.stats = {
      live: 0,
      replayed: 0,
      duplicates: 0,
      undecodable: 0,
      replayRequests: 0,
      heartbeats: 0,
      syncs: 0,
    };
  }

  // --- Sockets ---------------------------------------------------------------------------------

  /** Create, configure and connect both sockets, subscribe, and start reading (8.3-8.5). */
  async connect() {
    // 1.4: options (CURVE keys included) first, then connect. No ZMTP heartbeats, no
    // MAXMSGSIZE limit.
    this.dealer = new Dealer({
      linger: 0,
      immediate: true,
      sendHighWaterMark: 10_000,
      sendTimeout: 0, // non-blocking: a send that cannot be queued fails at once (EAGAIN)
      ...this.curve,
    });
    this.#watchHandshakes(this.dealer);
    this.sub = new Subscriber({ linger: 0, receiveHighWaterMark: 1_000_000, ...this.curve });
    // Our heartbeats come on our own topic; "H" is for monitors (a secure server ignores a
    // strategy key's subscription to it).
    this.sub.subscribe(strategyTopic(this.strategyId));
    this.sub.connect(this.eventsEndpoint);
    this.dealer.connect(this.commandEndpoint);
    this.commandLoop = this.#readCommands();
    this.eventLoop = this.#readEvents();
    this.ticker = setInterval(() => this.#tick(), 100);
  }

  /**
   * A refused handshake only shows on the socket's monitor: the DEALER just never connects, and
   * every send fails with EAGAIN. Keep why, so that sync() fails at once, naming it.
   */
  #watchHandshakes(socket) {
    const events = socket.events;
    events.on("handshake", () => {
      this.handshakeFailure = null;
    });
    events.on("handshake:error:auth", ({ error }) => {
      this.handshakeFailure =
        `the server refused this client's key (ZAP status ${error?.status}): ` +
        "it is not in the server's entitlements, or was revoked";
    });
    const failed = () => {
      this.handshakeFailure = this.curve
        ? `the CURVE handshake failed: wrong server key (${SERVER_KEY_ENV}), ` +
          "or the server runs without CURVE"
        : "the handshake failed: the server runs with CURVE; give its public key and a " +
          `client key (${SERVER_KEY_ENV}, ${CLIENT_KEY_ENV})`;
    };
    events.on("handshake:error:protocol", failed);
    events.on("handshake:error:other", failed);
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    for (const [, entry] of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(new ClosedError());
    }
    this.pending.clear();
    this.dealer?.close();
    this.sub?.close();
    await Promise.allSettled([this.commandLoop, this.eventLoop]);
  }

  async #readCommands() {
    try {
      for await (const frames of this.dealer) this.#onReply(frames);
    } catch (error) {
      if (!this.closed) this.#report(error);
    }
  }

  async #readEvents() {
    try {
      for await (const frames of this.sub) this.#onEvent(frames);
    } catch (error) {
      if (!this.closed) this.#report(error);
    }
  }

  #report(error) {
    if (this.listenerCount("error") > 0) this.emit("error", error);
  }

  #send(frame) {
    const sent = this.sendChain.then(() => {
      if (this.closed) throw new ClosedError();
      return this.dealer.send(frame);
    });
    this.sendChain = sent.catch(() => {});
    return sent;
  }

  // --- Requests (section 4) --------------------------------------------------------------------

  /**
   * Send one request and wait for its reply body. Rejects with VenueError (an `error` reply),
   * RequestTimeoutError (outcome unknown), SendError (nothing sent) or ProtocolError.
   * Pass `id` to resend a request whose outcome is unknown (same id, same body).
   */
  async request(type, body, { timeout = this.requestTimeout, id } = {}) {
    if (this.closed) throw new ClosedError();
    const expected = REPLY_TYPES[type];
    if (!expected) throw new TypeError(`${type} is not a request type`);
    const requestId = id ?? this.nextId++;
    const frame = encodeRequest(type, requestId, this.clientId, body);
    const entry = { type, expected };
    const reply = new Promise((resolve, reject) => {
      Object.assign(entry, { resolve, reject });
      entry.timer = setTimeout(() => {
        if (this.pending.get(requestId) === entry) this.pending.delete(requestId);
        reject(new RequestTimeoutError(type, requestId, timeout));
      }, timeout);
    });
    // A resend with the same id while an earlier wait is still pending: the reply goes to the
    // latest waiter; the earlier one runs into its own timeout.
    this.pending.set(requestId, entry);
    try {
      await this.#send(frame);
    } catch (error) {
      clearTimeout(entry.timer);
      if (this.pending.get(requestId) === entry) this.pending.delete(requestId);
      reply.catch(() => {});
      if (error instanceof ClosedError) throw error;
      throw new SendError(type, requestId, error, this.handshakeFailure);
    }
    return reply;
  }

  #onReply(frames) {
    if (frames.length !== 1) return; // a DEALER gets [reply]
    let envelope;
    try {
      envelope = decodeEnvelope(frames[0]);
    } catch {
      return; // unreadable: the request times out
    }
    if (envelope.id === undefined) return; // an error whose id could not be read (4.3)
    const entry = this.pending.get(envelope.id);
    if (!entry) return; // late or repeated answer
    this.pending.delete(envelope.id);
    clearTimeout(entry.timer);
    if (envelope.t === "error") {
      entry.reject(new VenueError(entry.type, envelope.b));
    } else if (envelope.t !== entry.expected) {
      entry.reject(new ProtocolError(`${entry.type} answered by ${envelope.t}`));
    } else {
      this.#noteSnapshots(envelope.t, envelope.b);
      entry.resolve(envelope.b);
    }
  }

  /** Snapshots in replies: order state, and `last_seq` proves the stream got that far (4.6). */
  #noteSnapshots(type, body) {
    const snapshots =
      type === "ack"
        ? [body.order]
        : type === "order_snapshot"
          ? [body]
          : type === "open_orders" || type === "sync_reply"
            ? (body.orders ?? body.open_orders ?? [])
            : [];
    for (const order of snapshots) {
      if (order.strategy_id !== this.strategyId) continue;
      const known = this.orders.get(order.client_order_id);
      if (!known || order.last_seq >= (known.last_seq ?? 0)) {
        this.orders.set(order.client_order_id, { ...order });
      }
      if (this.synced && type !== "sync_reply" && order.last_seq > this.latest) {
        this.latest = order.last_seq;
        this.#maybeReplay();
      }
    }
  }

  submit({
    clientOrderId,
    instrument,
    side,
    quantity,
    orderType = "limit",
    limitPrice = null,
    timeInForce = "day",
    expireAt = null,
  }) {
    return this.request("submit_order", {
      client_order_id: clientOrderId,
      strategy_id: this.strategyId,
      instrument,
      side,
      quantity: Decimal.parse(quantity),
      order_type: orderType,
      limit_price: limitPrice === null ? null : Decimal.parse(limitPrice),
      time_in_force: timeInForce,
      expire_at: expireAt === null ? null : expireAt instanceof Date ? Timestamp.fromDate(expireAt) : expireAt,
    });
  }

  amend(clientOrderId, { quantity = null, limitPrice = null } = {}) {
    return this.request("amend_order", {
      client_order_id: clientOrderId,
      strategy_id: this.strategyId,
      quantity: quantity === null ? null : Decimal.parse(quantity),
      limit_price: limitPrice === null ? null : Decimal.parse(limitPrice),
    });
  }

  cancel(clientOrderId) {
    return this.request("cancel_order", {
      client_order_id: clientOrderId,
      strategy_id: this.strategyId,
    });
  }

  cancelAll({ instrument = null, side = null } = {}) {
    return this.request("cancel_all_orders", { strategy_id: this.strategyId, instrument, side });
  }

  query(clientOrderId) {
    return this.request("query_order", {
      client_order_id: clientOrderId,
      strategy_id: this.strategyId,
    });
  }

  /** Every open order, page by page (3.4: `next_after`): one `open_orders` body with all. */
  async openOrders({ instrument = null } = {}) {
    const orders = [];
    let after = 0;
    for (;;) {
      const body = { strategy_id: this.strategyId, instrument, after };
      const page = await this.request("list_open_orders", body);
      orders.push(...page.orders);
      if (page.next_after === null || page.next_after === undefined) {
        return { ...page, orders };
      }
      after = page.next_after;
    }
  }

  // --- Sync (5.5) ------------------------------------------------------------------------------

  /**
   * Send `sync` every 0.25 s (a new id each time) until a `sync_reply` comes; 0.05 s after a
   * send that failed; give up after `timeout` ms. Sets the baseline on the first sync or a new
   * session; on a resync of the same session it only raises `latest` and replays the gap.
   * Fails at once with HandshakeError when the server refused the handshake, and with the
   * VenueError of an `error` reply (`not_authorized`: this key may not act for the strategy).
   */
  async sync({ timeout = 10_000, attempt = 250 } = {}) {
    const deadline = Date.now() + timeout;
    let lastError = null;
    while (Date.now() < deadline) {
      if (this.handshakeFailure) {
        throw new HandshakeError(this.commandEndpoint, this.handshakeFailure);
      }
      try {
        const reply = await this.request(
          "sync",
          { strategy_id: this.strategyId },
          { timeout: Math.max(1, Math.min(attempt, deadline - Date.now())) },
        );
        this.#applySync(reply);
        return reply;
      } catch (error) {
        lastError = error;
        if (error instanceof SendError) await sleep(50);
        else if (!(error instanceof RequestTimeoutError)) throw error;
      }
    }
    throw new Error(
      `no sync_reply from ${this.commandEndpoint} within ${timeout} ms` +
        (lastError ? ` (last: ${lastError.message})` : ""),
    );
  }

  #applySync(reply) {
    this.stats.syncs += 1;
    const resync = this.synced;
    const newSession = !resync || reply.session !== this.session;
    if (newSession) {
      // First sync, or a venue that started afresh: a new baseline (5.8).
      this.baseline = reply.seq;
      this.delivered = reply.seq;
      this.latest = reply.seq;
      this.replayOutstanding = null;
      if (resync) this.buffer.clear(); // numbers of the old session mean nothing now
      for (const seq of [...this.buffer.keys()]) if (seq <= reply.seq) this.buffer.delete(seq);
      this.orders.clear();
    } else {
      // Same session: keep the baseline; the reply says how far the stream has got at least.
      this.latest = Math.max(this.latest, reply.seq);
    }
    this.session = reply.session;
    this.instance = reply.instance;
    this.synced = true;
    this.#noteSnapshots("sync_reply", reply);
    for (const seq of this.buffer.keys()) this.latest = Math.max(this.latest, seq);
    this.emit("synced", reply, { resync, newSession });
    this.#drain();
    this.#maybeReplay();
  }

  #resync() {
    if (this.resyncing || this.closed) return;
    this.resyncing = this.sync()
      .catch((error) => this.#report(error))
      .finally(() => {
        this.resyncing = null;
      });
  }

  // --- Events (section 5) ----------------------------------------------------------------------

  #onEvent(frames) {
    if (frames.length !== 2) return; // [topic, envelope] only (5.2)
    this.lastEventAt = Date.now();
    if (!this.live) {
      this.live = true;
      this.emit("liveness", "live");
      if (this.wentSilent && this.synced) this.#resync(); // resumed: sync, replay the gap (5.8)
      this.wentSilent = false;
    }
    let envelope;
    try {
      envelope = decodeEnvelope(frames[1]);
    } catch {
      this.stats.undecodable += 1; // dropped: the gap it leaves is replayed
      return;
    }
    if (envelope.t === "heartbeat") this.#onHeartbeat(envelope.b);
    else if (envelope.t === "execution_report") this.#offer(envelope.b, "live");
  }

  #onHeartbeat(body) {
    this.stats.heartbeats += 1;
    this.emit("heartbeat", body);
    if (!this.synced) return;
    if (body.session !== this.session || body.instance !== this.instance) {
      this.#resync(); // another start of the venue: numbers not comparable until we sync
      return;
    }
    const seq = body.seqs?.[this.strategyId] ?? 0;
    if (seq > this.latest) this.latest = seq;
    this.#maybeReplay();
  }

  /** The sequencer: deliver in order, exactly once; buffer early ones; drop duplicates. */
  #offer(report, source) {
    if (report.strategy_id !== this.strategyId || !Number.isInteger(report.seq)) return;
    const seq = report.seq;
    if ((this.synced && seq <= this.delivered) || this.buffer.has(seq)) {
      this.stats.duplicates += 1;
      return;
    }
    this.buffer.set(seq, [report, source]);
    if (!this.synced) return; // kept until the sync reply says which are above the baseline
    if (seq > this.latest) this.latest = seq;
    this.#drain();
    this.#maybeReplay();
  }

  #drain() {
    for (;;) {
      const next = this.buffer.get(this.delivered + 1);
      if (!next) return;
      this.buffer.delete(this.delivered + 1);
      this.delivered += 1;
      const [report, source] = next;
      this.#deliver(report, source);
    }
  }

  #deliver(report, source) {
    this.stats[source === "replay" ? "replayed" : "live"] += 1;
    this.history.push(report);
    if (this.history.length > this.historyLimit) this.history.shift();
    const known = this.orders.get(report.client_order_id);
    if (!known || report.seq > (known.last_seq ?? 0)) {
      this.orders.set(report.client_order_id, {
        ...(known ?? {}),
        ...report,
        last_seq: report.seq,
      });
    }
    this.emit("execution_report", report, { source });
  }

  /** At most one replay outstanding; ask again after `replayRetry` ms without an answer (5.6). */
  #maybeReplay() {
    if (!this.synced || this.closed || this.latest <= this.delivered) return;
    const now = Date.now();
    if (this.replayOutstanding && now - this.replayOutstanding.sentAt < this.replayRetry) return;
    const lowestBuffered = Math.min(...this.buffer.keys(), Infinity);
    const fromSeq = this.delivered + 1;
    const toSeq = Math.min(this.latest, this.delivered + MAX_REPLAY, lowestBuffered - 1);
    if (toSeq < fromSeq) return;
    const marker = { sentAt: now };
    this.replayOutstanding = marker;
    this.stats.replayRequests += 1;
    this.emit("replay", { fromSeq, toSeq });
    this.request(
      "replay",
      { strategy_id: this.strategyId, from_seq: fromSeq, to_seq: toSeq },
      { timeout: Math.max(this.replayRetry * 5, this.requestTimeout) },
    ).then(
      (reply) => {
        if (this.replayOutstanding === marker) this.replayOutstanding = null;
        for (const frame of reply.events ?? []) {
          let envelope;
          try {
            envelope = decodeEnvelope(frame);
          } catch {
            continue;
          }
          if (envelope.t === "execution_report") this.#offer(envelope.b, "replay");
        }
        this.#maybeReplay(); // the 1000 cap, or more arrived meanwhile
      },
      (error) => {
        if (!(error instanceof ClosedError)) this.#report(error);
        // leave `replayOutstanding`: the tick asks again after replayRetry
      },
    );
  }

  #tick() {
    if (this.closed) return;
    if (this.live && Date.now() - this.lastEventAt > this.silenceMs) {
      this.live = false;
      this.wentSilent = true;
      this.emit("liveness", "silent");
    }
    this.#maybeReplay();
  }

  // --- Waiting ---------------------------------------------------------------------------------

  /**
   * The first delivered report that satisfies `predicate` (already delivered ones included);
   * rejects after `timeout` ms.
   */
  waitForReport(predicate, { timeout = this.requestTimeout, what = "the expected report" } = {}) {
    const found = this.history.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onReport = (report) => {
        if (!predicate(report)) return;
        cleanup();
        resolve(report);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `timed out after ${timeout} ms waiting for ${what} ` +
              `(delivered seq ${this.delivered}, latest ${this.latest})`,
          ),
        );
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("execution_report", onReport);
      };
      this.on("execution_report", onReport);
    });
  }

  /** Delivered reports about one order, in seq order. */
  reportsFor(clientOrderId) {
    return this.history.filter((r) => r.client_order_id === clientOrderId);
  }
}
