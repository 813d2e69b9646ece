// The wire codec of docs/protocol.md: the envelope (section 2), exact decimals (2.4) and msgpack
// Timestamps with microsecond precision (2.5). No dependency on sockets, so it can be checked
// against the worked examples of section 7 on its own (see selftest.js).

import {
  Decoder,
  EXT_TIMESTAMP,
  Encoder,
  ExtensionCodec,
  decodeTimestampToTimeSpec,
  encodeDateToTimeSpec,
  encodeTimeSpecToTimestamp,
} from "@msgpack/msgpack";

export const PROTOCOL_VERSION = 1;
export const ENVELOPE_KEYS = new Set(["v", "t", "id", "c", "b"]);

// ---------------------------------------------------------------------------------------------
// Decimals (2.4): strings on the wire, never binary floats. A tiny exact decimal on BigInt:
// value = coefficient * 10^exponent. Enough to compare and add quantities; the textual form the
// venue sent is kept (`raw`) so nothing is lost on the way through.

const DECIMAL_RE = /^([+-])?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

export class Decimal {
  /** @param {bigint} coefficient @param {number} exponent @param {string} [raw] */
  constructor(coefficient, exponent, raw) {
    this.coefficient = coefficient;
    this.exponent = exponent;
    this.raw = raw ?? null;
  }

  /** Parse "10.05", "40", "0", "1E+2", "1E-7", "10.00666666666666666666666667". */
  static parse(text) {
    if (text instanceof Decimal) return text;
    if (typeof text === "bigint") return new Decimal(text, 0);
    if (typeof text === "number") {
      if (!Number.isSafeInteger(text)) {
        throw new TypeError(`refusing the binary float ${text} as a decimal: pass a string`);
      }
      return new Decimal(BigInt(text), 0);
    }
    if (typeof text !== "string") throw new TypeError(`not a decimal: ${String(text)}`);
    const m = DECIMAL_RE.exec(text.trim());
    if (!m || (m[2] === "" && (m[3] ?? "") === "")) {
      throw new RangeError(`not a finite decimal: ${JSON.stringify(text)}`);
    }
    const [, sign, intPart, fracPart = "", expPart = "0"] = m;
    let coefficient = BigInt((intPart || "0") + fracPart);
    if (sign === "-") coefficient = -coefficient;
    return new Decimal(coefficient, Number(expPart) - fracPart.length, text);
  }

  #aligned(other) {
    const o = Decimal.parse(other);
    const e = Math.min(this.exponent, o.exponent);
    return [
      this.coefficient * 10n ** BigInt(this.exponent - e),
      o.coefficient * 10n ** BigInt(o.exponent - e),
      e,
    ];
  }

  cmp(other) {
    const [a, b] = this.#aligned(other);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  eq(other) {
    return this.cmp(other) === 0;
  }

  add(other) {
    const [a, b, e] = this.#aligned(other);
    return new Decimal(a + b, e);
  }

  sub(other) {
    const [a, b, e] = this.#aligned(other);
    return new Decimal(a - b, e);
  }

  isZero() {
    return this.coefficient === 0n;
  }

  /** Plain notation, trailing zeros kept as they came ("10.10" stays "10.10", "1E+2" is "100"). */
  toString() {
    const negative = this.coefficient < 0n;
    const digits = (negative ? -this.coefficient : this.coefficient).toString();
    let text;
    if (this.exponent >= 0) {
      text = digits + "0".repeat(this.exponent);
      if (digits === "0") text = "0";
    } else {
      const scale = -this.exponent;
      const padded = digits.padStart(scale + 1, "0");
      text = `${padded.slice(0, padded.length - scale)}.${padded.slice(padded.length - scale)}`;
    }
    return negative ? `-${text}` : text;
  }

  toJSON() {
    return this.toString();
  }
}

/** Body fields that carry decimals (quantities and prices), wherever they appear. */
export const DECIMAL_FIELDS = new Set([
  "quantity",
  "limit_price",
  "cum_qty",
  "leaves_qty",
  "avg_px",
  "last_qty",
  "last_px",
  "price",
  "filled_qty",
]);

/** Replace the decimal strings of a decoded body by Decimal values (in place, recursively). */
export function decodeDecimals(value) {
  if (Array.isArray(value)) {
    value.forEach(decodeDecimals);
  } else if (value !== null && typeof value === "object" && value.constructor === Object) {
    for (const [key, field] of Object.entries(value)) {
      if (DECIMAL_FIELDS.has(key) && typeof field === "string") value[key] = Decimal.parse(field);
      else decodeDecimals(field);
    }
  }
  return value;
}

/** Decimals back to strings for sending (a copy; the venue wants str, never a float). */
function encodeDecimals(value) {
  if (value instanceof Decimal) return value.toString();
  if (Array.isArray(value)) return value.map(encodeDecimals);
  if (value !== null && typeof value === "object" && value.constructor === Object) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encodeDecimals(v)]));
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Timestamps (2.5): ext -1, seconds + nanoseconds since the epoch, UTC. A JS Date keeps only
// milliseconds, so decode into a Timestamp that keeps both numbers.

export class Timestamp {
  /** @param {number} sec @param {number} nsec */
  constructor(sec, nsec = 0) {
    this.sec = sec;
    this.nsec = nsec;
  }

  static fromDate(date) {
    const { sec, nsec } = encodeDateToTimeSpec(date);
    return new Timestamp(sec, nsec);
  }

  /** "2026-01-05T09:00:01.500000Z": microseconds, the precision the venue keeps. */
  static parse(iso) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(iso);
    if (!m) throw new RangeError(`not an ISO 8601 instant with a zone: ${iso}`);
    const ms = Date.parse(`${m[1]}${m[3]}`);
    if (Number.isNaN(ms)) throw new RangeError(`not an ISO 8601 instant: ${iso}`);
    return new Timestamp(ms / 1000, Number((m[2] ?? "").padEnd(9, "0")));
  }

  toDate() {
    return new Date(this.sec * 1000 + Math.floor(this.nsec / 1e6));
  }

  toISOString() {
    const base = new Date(this.sec * 1000).toISOString().slice(0, 19);
    return `${base}.${String(Math.floor(this.nsec / 1000)).padStart(6, "0")}Z`;
  }

  toJSON() {
    return this.toISOString();
  }
}

const extensionCodec = new ExtensionCodec();
extensionCodec.register({
  type: EXT_TIMESTAMP,
  encode(object) {
    if (object instanceof Timestamp) {
      return encodeTimeSpecToTimestamp({ sec: object.sec, nsec: object.nsec });
    }
    if (object instanceof Date) return encodeTimeSpecToTimestamp(encodeDateToTimeSpec(object));
    return null;
  },
  decode(data) {
    const { sec, nsec } = decodeTimestampToTimeSpec(data);
    return new Timestamp(sec, nsec);
  },
});

// Strings as str (never bin), bin only for bytes; no size limit on what we receive (2.6).
const encoder = new Encoder({ extensionCodec });
const decoder = new Decoder({ extensionCodec });

/** Raw msgpack, for the self-test: no decimal conversion. */
export function packRaw(value) {
  return Buffer.from(encoder.encode(value));
}

export function unpackRaw(bytes) {
  return decoder.decode(bytes);
}

export class WireError extends Error {}

/**
 * One request frame. Keys in the venue's order v, t, id, c, b (readers must not depend on it,
 * but it makes frames comparable with the worked examples).
 */
export function encodeRequest(type, id, clientId, body) {
  const envelope = { v: PROTOCOL_VERSION, t: type, id };
  if (clientId) envelope.c = clientId;
  envelope.b = encodeDecimals(body ?? {});
  return packRaw(envelope);
}

/** Decode one frame into {v, t, id, b}; decimals become Decimal. Throws WireError. */
export function decodeEnvelope(bytes) {
  let envelope;
  try {
    envelope = unpackRaw(bytes);
  } catch (error) {
    throw new WireError(`not msgpack: ${error.message}`);
  }
  if (envelope === null || typeof envelope !== "object" || Array.isArray(envelope)) {
    throw new WireError("the top level is not a map");
  }
  for (const key of Object.keys(envelope)) {
    if (!ENVELOPE_KEYS.has(key)) throw new WireError(`unknown envelope key ${key}`);
  }
  if (envelope.v !== PROTOCOL_VERSION) throw new WireError(`protocol version ${envelope.v}`);
  if (typeof envelope.t !== "string") throw new WireError("no message type");
  if (envelope.id !== undefined && !(Number.isInteger(envelope.id) && envelope.id >= 0)) {
    throw new WireError("id is not a non-negative integer");
  }
  const body = envelope.b;
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new WireError("the body is not a map");
  }
  try {
    decodeDecimals(body);
  } catch (error) {
    throw new WireError(`bad decimal in ${envelope.t}: ${error.message}`);
  }
  return envelope;
}
