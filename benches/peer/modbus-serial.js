// A bare Modbus TCP poller, the peer `pollwatch bench field --peer-cmd` measures
// pollwatch against: Node.js + modbus-serial, no storage, no rules, nothing else.
// Same job as the benchmark's pollwatch side: every meter read once a second, one
// "read input registers" request of 4 registers at 52 (two f32), ten unit ids
// behind each simulated gateway, one TCP connection per gateway.
//
// Where to poll comes from the environment the benchmark sets:
//   PEER_HOST (127.0.0.1), PEER_BASE_PORT, PEER_GATEWAYS, PEER_UNITS, PEER_DEVICES
// Once a second it prints one line the benchmark parses:
//   peer polls=<good polls so far> errors=<failed polls> p50_ms=<x> p99_ms=<y>
// where the jitter figures are |gap between consecutive good reads of a meter − 1 s|
// over every read after the first 3 s (the same definition as pollwatch's side).
"use strict";
const ModbusRTU = require("modbus-serial");

const host = process.env.PEER_HOST || "127.0.0.1";
const basePort = Number(process.env.PEER_BASE_PORT || 21000);
const units = Number(process.env.PEER_UNITS || 10);
const devices = Number(process.env.PEER_DEVICES || 1000);
const gateways = Number(process.env.PEER_GATEWAYS || Math.ceil(devices / units));
const INTERVAL_MS = 1000;
const started = Date.now();

let polls = 0;
let errors = 0;
const histogram = new Uint32Array(2001); // jitter in whole ms, last bucket = ≥ 2 s

function record(last, now) {
  if (last === 0 || now - started < 3000) return;
  const j = Math.min(2000, Math.round(Math.abs(now - last - INTERVAL_MS)));
  histogram[j] += 1;
}

function percentile(p) {
  let total = 0;
  for (const c of histogram) total += c;
  if (total === 0) return 0;
  const want = Math.ceil(total * p);
  let seen = 0;
  for (let ms = 0; ms < histogram.length; ms++) {
    seen += histogram[ms];
    if (seen >= want) return ms;
  }
  return histogram.length - 1;
}

async function gateway(g) {
  const client = new ModbusRTU();
  await client.connectTCP(host, { port: basePort + g });
  client.setTimeout(500);
  const first = g * units;
  for (let u = 0; u < units && first + u < devices; u++) {
    const unit = u + 1;
    let last = 0;
    // Spread the meters of a gateway over the second, as pollwatch does.
    setTimeout(() => {
      setInterval(() => {
        client.writeFC4(unit, 52, 4, (err, data) => {
          if (err || !data || data.buffer.length !== 8) {
            errors += 1;
            return;
          }
          // Decode as a real poller would: two big-endian f32 values.
          const power = data.buffer.readFloatBE(0);
          const energy = data.buffer.readFloatBE(4);
          if (!Number.isFinite(power + energy)) {
            errors += 1;
            return;
          }
          const now = Date.now();
          record(last, now);
          last = now;
          polls += 1;
        });
      }, INTERVAL_MS);
    }, Math.floor((INTERVAL_MS * u) / units));
  }
}

for (let g = 0; g < gateways; g++) {
  gateway(g).catch((e) => {
    console.error(`gateway ${g}: ${e.message}`);
    process.exit(1);
  });
}

setInterval(() => {
  console.log(`peer polls=${polls} errors=${errors} p50_ms=${percentile(0.5)} p99_ms=${percentile(0.99)}`);
}, 1000);
process.on("SIGTERM", () => process.exit(0));
