// Load generator: speaks the platform's real protocol with the official socket.io-client.
//
//   node bench/loadgen.mjs <config.json>
//
// The config (written by bench/run.py) names the targets, the scenario and its numbers, and,
// for the platform ("chatd" mode), the organizations' embed tokens and agent logins. In
// "bare" mode it drives bench/bare_server.py, which has the same events without auth or
// storage: the ceiling every figure is compared with.
//
// Prints one JSON line with the scenario's measurements.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { io } from "socket.io-client";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const bare = cfg.mode === "bare";
const targets = cfg.targets;
let rr = 0;
const nextTarget = () => targets[rr++ % targets.length];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

// ---- latency recording -------------------------------------------------------------------
class Hist {
  constructor() { this.v = []; }
  add(x) { this.v.push(x); }
  summary() {
    if (!this.v.length) return { n: 0 };
    const s = Float64Array.from(this.v).sort();
    const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: s[s.length - 1] };
  }
}

// ---- connections ---------------------------------------------------------------------------
function connect(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const s = io(url, { transports: ["websocket"], reconnection: false, timeout: 60000, ...opts });
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(e));
  });
}

async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let i = 0;
  async function worker() {
    while (i < items.length) {
      const k = i++;
      out[k] = await fn(items[k], k);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

async function login(url, email, password) {
  const r = await fetch(`${url}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (r.status !== 200) throw new Error(`login ${email}: ${r.status}`);
  return r.headers.get("set-cookie").split(";")[0];
}

async function openConversation(url, token, externalId) {
  const r = await fetch(`${url}/chat-widget/conversations`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ embed_token: token, external_id: externalId }),
  });
  if (r.status !== 200 && r.status !== 201) throw new Error(`open conversation: ${r.status}`);
  return (await r.json()).id;
}

const uuid = () => crypto.randomUUID();
const t00 = now();
// Progress goes to stderr (the runner keeps it in its log); results go to stdout.
const progress = (msg) => console.error(`[loadgen +${((now() - t00) / 1000).toFixed(1)}s] ${msg}`);

// A pair: one visitor and one agent in a conversation; the agent also listens to its org queue.
async function makePairs(nPairs, { withAgents = true } = {}) {
  const orgs = cfg.orgs;
  const perOrg = cfg.agents_per_org;
  const specs = Array.from({ length: nPairs }, (_, i) => {
    const org = orgs[Math.floor(i / perOrg) % orgs.length];
    return { i, org, agent: org.agents[i % perOrg], orgIndex: Math.floor(i / perOrg) % orgs.length };
  });
  return pool(specs, 50, async (spec) => {
    const ext = `bench-${cfg.run_id}-${spec.i}`;
    const visitorUrl = nextTarget();
    const agentUrl = nextTarget();
    const conv = bare ? uuid() : await openConversation(visitorUrl, spec.org.embed_token, ext);
    const visitor = await connect(visitorUrl);
    const vJoin = await visitor.emitWithAck("join_conversation", { conversation_id: conv, external_id: ext });
    if (vJoin && vJoin.error) throw new Error(`visitor join: ${JSON.stringify(vJoin.error)}`);
    let agent = null;
    if (withAgents) {
      const cookie = bare ? null : (spec.agent.cookie || await login(agentUrl, spec.agent.email, spec.agent.password));
      agent = await connect(agentUrl, cookie ? { extraHeaders: { Cookie: cookie } } : {});
      await agent.emitWithAck("join_queue", bare ? { org_id: `org-${spec.orgIndex}` } : {});
      const aJoin = await agent.emitWithAck("join_conversation", { conversation_id: conv });
      if (aJoin && aJoin.error) throw new Error(`agent join: ${JSON.stringify(aJoin.error)}`);
    }
    if ((spec.i + 1) % 500 === 0) progress(`${spec.i + 1}/${nPairs} pairs connected`);
    return { conv, ext, visitor, agent, org: `org-${spec.orgIndex}`, lastSeq: 0 };
  });
}

// An ack that never comes (a dropped socket under overload) counts as a failure, not a crash.
function send(sock, data) {
  return sock.timeout(30000).emitWithAck("send_message", data).catch(() => ({ error: { code: "no_ack" } }));
}

function payload(pair, who, t) {
  const p = { conversation_id: pair.conv, content: `${t}`, content_type: "text", sender_type: who };
  if (who === "end_user") p.external_id = pair.ext;
  if (bare) p.org_id = pair.org;
  return p;
}

function watch(pairs, hist, counters) {
  for (const pair of pairs) {
    for (const s of [pair.visitor, pair.agent]) {
      if (!s) continue;
      const isVisitor = s === pair.visitor;
      s.on("message_received", (m) => {
        counters.delivered++;
        counters.msgDelivered++;
        const t = Number(m.content);
        if (t > 0) hist.add(now() - t);
        if (isVisitor && m.seq > pair.lastSeq) pair.lastSeq = m.seq;
      });
      s.on("conversation_updated", () => { counters.delivered++; });
      s.on("error", () => { counters.errors++; });
    }
  }
}

// Failed sends are counted by error code, so that a run's failures can be explained.
function fail(counters, ack) {
  counters.failed++;
  const code = ack.error.code || "unknown";
  counters.failedCodes = counters.failedCodes || {};
  counters.failedCodes[code] = (counters.failedCodes[code] || 0) + 1;
}

function cpuSnapshot() { return process.cpuUsage(); }

// ---- scenarios ------------------------------------------------------------------------------
async function saturation() {
  const pairs = await makePairs(cfg.pairs);
  const hist = new Hist();
  const ackHist = new Hist();
  const counters = { delivered: 0, msgDelivered: 0, errors: 0, acked: 0, failed: 0 };
  watch(pairs, hist, counters);
  let running = true;
  const senders = [];
  for (const pair of pairs) {
    senders.push([pair, "agent", pair.agent], [pair, "end_user", pair.visitor]);
  }
  async function loop([pair, who, sock]) {
    while (running) {
      const t = now();
      const ack = await send(sock, payload(pair, who, t));
      if (ack && ack.error) fail(counters, ack); else { counters.acked++; ackHist.add(now() - t); }
    }
  }
  const window = cfg.window || 1;
  const tasks = [];
  await sleep(500);
  console.log(JSON.stringify({ measuring: true }));
  const start = now();
  for (const s of senders) for (let w = 0; w < window; w++) tasks.push(loop(s));
  await sleep(cfg.duration * 1000);
  console.log(JSON.stringify({ measured: true }));
  running = false;
  const elapsed = (now() - start) / 1000;
  const acked = counters.acked, delivered = counters.delivered;
  await Promise.all(tasks);
  await sleep(1000);
  close(pairs);
  return {
    scenario: "saturation", clients: pairs.length * 2, pairs: pairs.length, seconds: elapsed,
    msgs_per_s: acked / elapsed, deliveries_per_s: delivered / elapsed,
    acked, failed: counters.failed, failed_codes: counters.failedCodes || {}, errors: counters.errors,
    deliver_latency_ms: hist.summary(), ack_latency_ms: ackHist.summary(),
  };
}

async function steady() {
  const pairs = await makePairs(cfg.pairs);
  const hist = new Hist();
  const ackHist = new Hist();
  const counters = { delivered: 0, msgDelivered: 0, errors: 0, acked: 0, failed: 0 };
  watch(pairs, hist, counters);
  await sleep(500);
  console.log(JSON.stringify({ measuring: true }));
  const rate = cfg.rate;
  const total = Math.round(rate * cfg.duration);
  const start = now();
  const pending = [];
  let sent = 0;
  while (sent < total) {
    const due = Math.floor(((now() - start) / 1000) * rate) + 1;
    while (sent < Math.min(due, total)) {
      const pair = pairs[sent % pairs.length];
      const who = (Math.floor(sent / pairs.length) % 2) ? "end_user" : "agent";
      const sock = who === "agent" ? pair.agent : pair.visitor;
      const t = now();
      pending.push(send(sock, payload(pair, who, t)).then((ack) => {
        if (ack && ack.error) fail(counters, ack); else { counters.acked++; ackHist.add(now() - t); }
      }));
      sent++;
    }
    await sleep(1);
  }
  await Promise.all(pending);
  console.log(JSON.stringify({ measured: true }));
  await sleep(2000);
  const elapsed = (now() - start) / 1000;
  close(pairs);
  // Each message reaches both members of its conversation room.
  const expected = counters.acked * 2;
  return {
    scenario: "steady", rate, seconds: elapsed, sent, acked: counters.acked, failed: counters.failed,
    failed_codes: counters.failedCodes || {},
    delivered: counters.msgDelivered, expected, delivered_ratio: expected ? counters.msgDelivered / expected : 0,
    deliver_latency_ms: hist.summary(), ack_latency_ms: ackHist.summary(),
  };
}

async function idle() {
  const n = cfg.visitors;
  const socks = await pool(Array.from({ length: n }, (_, i) => i), 100, async (i) => {
    const url = nextTarget();
    const ext = `idle-${cfg.run_id}-${i}`;
    const conv = bare ? uuid() : await openConversation(url, cfg.orgs[i % cfg.orgs.length].embed_token, ext);
    const s = await connect(url);
    const ack = await s.emitWithAck("join_conversation", { conversation_id: conv, external_id: ext });
    if (ack && ack.error) throw new Error(JSON.stringify(ack.error));
    return s;
  });
  // Signal the runner that everything is connected, then hold until it has measured.
  console.log(JSON.stringify({ ready: true, connected: socks.length }));
  await sleep(cfg.hold_seconds * 1000);
  for (const s of socks) s.close();
  return { scenario: "idle", connected: socks.length };
}

async function storm() {
  const pairs = await makePairs(cfg.pairs);
  const counters = { delivered: 0, msgDelivered: 0, errors: 0, acked: 0, failed: 0 };
  const hist = new Hist();
  watch(pairs, hist, counters);
  let running = true;
  // Agents keep sending throughout.
  const senders = pairs.filter((_, i) => i % Math.max(1, Math.floor(pairs.length / cfg.active_senders)) === 0);
  const loops = senders.map(async (pair) => {
    while (running) {
      const ack = await send(pair.agent, payload(pair, "agent", now()));
      if (ack && ack.error) fail(counters, ack); else counters.acked++;
      await sleep(cfg.sender_pause_ms);
    }
  });
  await sleep(1000);
  // Every visitor drops at once, and reconnects at once with its last_seq.
  const seen = new Map();
  for (const pair of pairs) {
    pair.visitor.close();
    pair.dropSeq = pair.lastSeq;
    seen.set(pair, new Map());
  }
  progress(`${pairs.length} visitors dropped`);
  console.log(JSON.stringify({ measuring: true }));
  await sleep(cfg.offline_ms);
  const t0 = now();
  const caughtUp = await pool(pairs, pairs.length, async (pair) => {
    const s = await connect(nextTarget());
    const got = seen.get(pair);
    s.on("message_received", (m) => { got.set(m.seq, (got.get(m.seq) || 0) + 1); });
    const ack = await s.emitWithAck("join_conversation", {
      conversation_id: pair.conv, external_id: pair.ext, last_seq: pair.dropSeq,
    });
    if (ack && ack.error) throw new Error(JSON.stringify(ack.error));
    pair.visitor = s;
    // Caught up: the replay (every message up to the ack's last_seq) has arrived.
    while ([...got.keys()].filter((q) => q <= ack.last_seq).length < ack.last_seq - pair.dropSeq) {
      await sleep(5);
    }
    return now() - t0;
  });
  console.log(JSON.stringify({ measured: true }));
  const caughtUpSeconds = Math.max(...caughtUp) / 1000;
  progress(`every visitor caught up in ${caughtUpSeconds.toFixed(2)} s`);
  running = false;
  await Promise.all(loops);
  await sleep(1500);
  // Every message after the drop point must have reached the visitor exactly once.
  let missed = 0, duplicates = 0, checked = 0;
  if (!bare) {
    await pool(pairs, 50, async (pair) => {
      let after = pair.dropSeq;
      for (;;) {
        const r = await fetch(`${targets[0]}/chat-widget/history/${pair.conv}?external_id=${encodeURIComponent(pair.ext)}&after_seq=${after}`);
        const page = await r.json();
        for (const m of page) {
          checked++;
          const n = seen.get(pair).get(m.seq) || 0;
          if (n === 0) missed++;
          if (n > 1) duplicates++;
          after = m.seq;
        }
        if (page.length < 100) break;
      }
    });
  }
  close(pairs);
  return {
    scenario: "storm", visitors: pairs.length, caught_up_seconds: caughtUpSeconds,
    messages_checked: checked, missed, duplicates, agent_msgs_acked: counters.acked,
  };
}

function close(pairs) {
  for (const p of pairs) { p.visitor?.close(); p.agent?.close(); }
}

const scenarios = { saturation, steady, idle, storm };
const cpu0 = cpuSnapshot();
const result = await scenarios[cfg.scenario]();
const cpu = process.cpuUsage(cpu0);
result.loadgen_cpu_s = (cpu.user + cpu.system) / 1e6;
console.log(JSON.stringify(result));
process.exit(0);
