// ONNX Runtime peer of bench/cpu/bench.py: a persistent process that holds inference sessions
// (npm onnxruntime-node, CPU execution provider) and times them on request, so that the driver
// can interleave it with the other peers without paying session creation per sample.
//
// Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.
//   {"cmd":"info"}                                     -> versions
//   {"cmd":"load","name":N,"model":PATH,"opt":"disabled"|"basic"|"extended"|"all",
//    "inputs":{INPUT:FILE.npy,...}}                    -> session created, inputs read
//   {"cmd":"run","name":N,"iters":K,"warmup":W}        -> {"t":[seconds of each timed run]}
//   {"cmd":"save","name":N,"output":OUT,"path":FILE}   -> output OUT of one run, raw float32 LE
//   {"cmd":"unload"}                                   -> every session released
//   {"cmd":"quit"}
// Sessions run on NTHREADS intra-op threads (default 2), one inter-op thread, sequentially.
'use strict';
const fs = require('fs');
const readline = require('readline');
const ort = require('onnxruntime-node');

const THREADS = parseInt(process.env.NTHREADS || '2', 10);
let sessions = {};

// A .npy file (version 1-3, little-endian f4/i8/i4, C order) as an ort.Tensor.
function readNpy(path) {
  const buf = fs.readFileSync(path);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(path + ': not a .npy file');
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']*)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(path + ': Fortran order');
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim())
    .filter((s) => s.length).map(Number);
  const bytes = buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + buf.length);
  const kinds = {
    '<f4': ['float32', Float32Array], '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array],
  };
  if (!kinds[descr]) throw new Error(path + ': unsupported dtype ' + descr);
  const [type, Array] = kinds[descr];
  return new ort.Tensor(type, new Array(bytes), shape);
}

async function load(m) {
  const t0 = process.hrtime.bigint();
  const sess = await ort.InferenceSession.create(m.model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: m.opt || 'all',
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: 3,
  });
  const feeds = {};
  for (const [name, path] of Object.entries(m.inputs)) feeds[name] = readNpy(path);
  sessions[m.name] = { sess, feeds };
  return { create_s: Number(process.hrtime.bigint() - t0) / 1e9, inputs: sess.inputNames,
           outputs: sess.outputNames };
}

async function run(m) {
  const s = sessions[m.name];
  if (!s) throw new Error('no session ' + m.name);
  for (let i = 0; i < (m.warmup || 0); i++) await s.sess.run(s.feeds);
  const t = [];
  for (let i = 0; i < (m.iters || 1); i++) {
    const t0 = process.hrtime.bigint();
    await s.sess.run(s.feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { t };
}

async function save(m) {
  const s = sessions[m.name];
  const r = await s.sess.run(s.feeds);
  const o = r[m.output || s.sess.outputNames[0]];
  fs.writeFileSync(m.path, Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength));
  return { dims: o.dims, type: o.type };
}

async function unload() {
  for (const s of Object.values(sessions)) await s.sess.release();
  sessions = {};
  return { ok: true };
}

async function handle(m) {
  switch (m.cmd) {
    case 'info': return { onnxruntime: ort.env.versions, node: process.version, threads: THREADS };
    case 'load': return load(m);
    case 'run': return run(m);
    case 'save': return save(m);
    case 'unload': return unload();
    case 'quit': return { ok: true, quit: true };
    default: throw new Error('unknown command ' + m.cmd);
  }
}

// Commands are handled one at a time, in order.
const queue = [];
let busy = false;
async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    let reply;
    try {
      reply = await handle(JSON.parse(queue.shift()));
    } catch (e) {
      reply = { error: String((e && e.stack) || e) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
    if (reply.quit) process.exit(0);
  }
  busy = false;
}
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => { if (line.trim()) { queue.push(line); pump(); } });
lines.on('close', () => process.exit(0));
