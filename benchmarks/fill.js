'use strict';
// Benchmark helper: adds jobs with Node BullMQ's own `Queue.addBulk`, in batches.
//   REDIS_URL=... BULLMQ_PREFIX=... node benchmarks/fill.js --queues a,b --count N
//                                    [--batch 1000] [--in-flight 4]
// Adds N jobs (name `job`, data `{}`) to every queue listed, `--batch` jobs per addBulk call and
// up to `--in-flight` calls outstanding at once. bullmq and ioredis come from the test fixture's
// node_modules (tests/fixtures/worker), so nothing is installed for the benchmarks.
// Prints `fill:added <total>` at the end.
const path = require('node:path');
const { createRequire } = require('node:module');
const { parseArgs } = require('node:util');

const fixture = createRequire(
  path.join(__dirname, '..', 'tests', 'fixtures', 'worker', 'package.json'),
);
const IORedis = fixture('ioredis');
const { Queue } = fixture('bullmq');

const { values: args } = parseArgs({
  options: {
    queues: { type: 'string', default: 'sla' },
    count: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '1000' },
    'in-flight': { type: 'string', default: '4' },
  },
});

const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379/0';
const prefix = process.env.BULLMQ_PREFIX || 'bull';
const count = Number(args.count);
const batch = Number(args.batch);
const inFlight = Number(args['in-flight']);

async function fillQueue(queue) {
  const sizes = [];
  for (let left = count; left > 0; left -= batch) sizes.push(Math.min(batch, left));
  let added = 0;
  let next = 0;
  const lane = async () => {
    while (next < sizes.length) {
      const size = sizes[next++];
      const jobs = Array.from({ length: size }, () => ({ name: 'job', data: {} }));
      const done = await queue.addBulk(jobs);
      added += done.length;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return added;
}

async function main() {
  const client = new IORedis(redisUrl, { maxRetriesPerRequest: null });
  let total = 0;
  for (const name of args.queues.split(',').filter(Boolean)) {
    const queue = new Queue(name, { connection: client, prefix });
    total += await fillQueue(queue);
    await queue.close();
  }
  await client.quit();
  console.log(`fill:added ${total}`);
}

main().catch((err) => {
  console.error(`fill:fatal ${err.name}: ${err.message}`);
  process.exit(1);
});
