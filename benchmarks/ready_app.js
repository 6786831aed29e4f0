'use strict';
// Benchmark helper for readiness.py: a BullMQ worker that prints its readiness marker when the
// harness says, and stamps the moment it does.
//   REDIS_URL=... BULLMQ_PREFIX=... [QUEUE=bench-ready] node benchmarks/ready_app.js
// On start it runs one BullMQ Worker (bullmq and ioredis from the test fixture's node_modules,
// as fill.js) and waits for its `ready` event, like the fixture worker. Then it waits (BLPOP)
// for the harness's go message on `<prefix>:readiness:go`, `{"at": <epoch ms>}`: the
// wall-clock moment to print the marker. At that moment (at once if it is already past) it
// stamps, prints `worker:ready`, stamps again, and RPUSHes
// `{"pid", "before", "after", "at", "date"}` to `<prefix>:readiness:marks`. Stamps are epoch
// ms with sub-millisecond resolution (performance.timeOrigin + performance.now()); `date` is
// Date.now() taken just before, a check on that clock. The push comes after the line, so its
// Redis round trip is not in the stamp. Nothing is printed after the marker.
// SIGINT/SIGTERM: `worker:closing`, close the worker, `worker:closed`, exit 0.
const path = require('node:path');
const { createRequire } = require('node:module');

const fixture = createRequire(
  path.join(__dirname, '..', 'tests', 'fixtures', 'worker', 'package.json'),
);
const IORedis = fixture('ioredis');
const { Worker } = fixture('bullmq');

const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const prefix = process.env.BULLMQ_PREFIX || 'bull';
const queue = process.env.QUEUE || 'bench-ready';
const goKey = `${prefix}:readiness:go`;
const marksKey = `${prefix}:readiness:marks`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const epochMs = () => performance.timeOrigin + performance.now();

let closing = false;

async function main() {
  const commands = new IORedis(redisUrl, { maxRetriesPerRequest: null });
  commands.on('error', () => {});
  const worker = new Worker(queue, async () => ({ ok: true }), {
    connection: { url: redisUrl, maxRetriesPerRequest: null },
    prefix,
    name: 'bench-ready',
  });
  worker.on('error', (err) => console.error(`worker:error ${err.name}`));

  const shutdown = async () => {
    if (closing) return;
    closing = true;
    console.log('worker:closing');
    await worker.close();
    commands.disconnect();
    console.log('worker:closed');
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);

  await new Promise((resolve) => worker.once('ready', resolve));
  const popped = await commands.blpop(goKey, 0);
  const at = Number(JSON.parse(popped[1]).at);
  // setTimeout may fire up to ~1 ms early or late: sleep, then spin out the last bit.
  const wait = at - epochMs();
  if (wait > 2) await sleep(wait - 2);
  while (epochMs() < at) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  const date = Date.now(); // whole ms: a check on the stamp's clock
  const before = epochMs();
  console.log('worker:ready');
  const after = epochMs();
  const mark = { pid: process.pid, before, after, at, date };
  await commands.rpush(marksKey, JSON.stringify(mark));
}

main().catch((err) => {
  if (closing) return; // the pending BLPOP of a process told to stop
  console.error(`worker:fatal ${err.name} ${err.message}`);
  process.exit(1);
});
