// Checks the codec against the worked examples of docs/protocol.md section 7, both ways
// (section 8, step 1): decode each hex frame, re-encode it, and compare the bytes.
//
//   node selftest.js [path/to/protocol.md]
//
// Prints one JSON line {"ok": ..., "frames": N, ...}; exit code 0 when every frame round-trips.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import {
  Decimal,
  Timestamp,
  decodeEnvelope,
  encodeRequest,
  packRaw,
  unpackRaw,
} from "./codec.js";

const here = dirname(fileURLToPath(import.meta.url));
const docPath = process.argv[2] ?? join(here, "..", "..", "docs", "protocol.md");
const doc = readFileSync(docPath, "utf8");

const failures = [];
const check = (condition, message) => {
  if (!condition) failures.push(message);
};

// Every example block, and the hex frames in it (a ```text block of hex digits only).
const frames = [];
const blockRe = /<!-- example:([\w-]+) -->([\s\S]*?)<!-- \/example -->/g;
for (const [, name, block] of doc.matchAll(blockRe)) {
  for (const [, code] of block.matchAll(/```text\n([\s\S]*?)```/g)) {
    const hex = code.replace(/\s+/g, "");
    if (/^[0-9a-f]+$/.test(hex) && hex.length % 2 === 0) {
      frames.push({ name, bytes: Buffer.from(hex, "hex") });
    }
  }
}
check(frames.length > 0, `no hex examples found in ${docPath}`);

function roundTrip(name, bytes) {
  const raw = unpackRaw(bytes);
  check(Buffer.compare(packRaw(raw), bytes) === 0, `${name}: re-encoded bytes differ`);
  if (raw.v !== 1) {
    // The example of a wrong version (7.11): our decoder must refuse it too.
    let refusedVersion = false;
    try {
      decodeEnvelope(bytes);
    } catch {
      refusedVersion = true;
    }
    check(refusedVersion, `${name}: protocol version ${raw.v} accepted`);
    return raw;
  }
  return decodeEnvelope(bytes); // decimals and the envelope shape
}

let nested = 0;
for (const { name, bytes } of frames) {
  try {
    const envelope = roundTrip(name, bytes);
    if (envelope.t === "replay_reply") {
      for (const inner of envelope.b.events) {
        roundTrip(`${name} (replayed frame)`, Buffer.from(inner));
        nested += 1;
      }
    }
  } catch (error) {
    failures.push(`${name}: ${error.message}`);
  }
}

// Our request encoder gives the example's bytes (7.2): Decimal and Timestamp values included.
const submit = frames.find((f) => f.name === "submit_order");
const ours = encodeRequest("submit_order", 2, "c1", {
  client_order_id: "o-1",
  strategy_id: "s1",
  instrument: "MAN",
  side: "buy",
  quantity: Decimal.parse("100"),
  order_type: "limit",
  limit_price: Decimal.parse("10.05"),
  time_in_force: "gtc",
  expire_at: Timestamp.parse("2026-01-05T17:30:00Z"),
});
check(submit && Buffer.compare(ours, submit.bytes) === 0, "encodeRequest differs from 7.2");

// 2.5: the two timestamp layouts of the text.
const ts32 = unpackRaw(Buffer.from("d6ff695b7d90", "hex"));
check(ts32 instanceof Timestamp, "timestamp 32 is not decoded as a Timestamp");
check(ts32.toISOString() === "2026-01-05T09:00:00.000000Z", `timestamp 32: ${ts32.toISOString()}`);
const ts64 = unpackRaw(Buffer.from("d7ff77359400695b7d91", "hex"));
check(ts64.sec === 1767603601 && ts64.nsec === 500_000_000, "timestamp 64 sec/nsec");
check(ts64.toISOString() === "2026-01-05T09:00:01.500000Z", `timestamp 64: ${ts64.toISOString()}`);
check(packRaw(ts64).toString("hex") === "d7ff77359400695b7d91", "timestamp 64 re-encoding");
const iso = Timestamp.parse("2026-01-05T09:00:01.500000+00:00");
check(iso.sec === 1767603601 && iso.nsec === 500_000_000, "Timestamp.parse");

// 2.4: decimals as the venue writes them.
check(Decimal.parse("1E+2").eq("100") && Decimal.parse("1E+2").toString() === "100", "1E+2");
check(Decimal.parse("1E-7").toString() === "0.0000001", "1E-7");
check(Decimal.parse("10.10").toString() === "10.10", "10.10 keeps its trailing zero");
check(Decimal.parse("10.10").eq("10.1"), "10.10 == 10.1");
check(Decimal.parse("40").add("60").eq("100"), "40 + 60");
check(
  Decimal.parse("10.00666666666666666666666667").cmp("10.00666666666666666666666666") > 0,
  "28 significant digits",
);
let refused = false;
try {
  Decimal.parse(0.1);
} catch {
  refused = true;
}
check(refused, "a binary float must be refused");

const ok = failures.length === 0;
process.stdout.write(
  `${JSON.stringify({ ok, frames: frames.length, replayed_frames: nested, failures })}\n`,
);
process.exitCode = ok ? 0 : 1;
