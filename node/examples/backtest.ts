// The seed's usage from TypeScript: one backtest run with phases and trials. Compiled by
// `make test-node` (tsc, strict) and run by node/test/typescript.test.js.
import { getEventEmitter, Position, SchemaError } from '../index';

declare const process: { argv: string[]; env: { [k: string]: string | undefined } };
declare const console: { log(...args: unknown[]): void };

async function main(root: string): Promise<Position> {
  const emitter = getEventEmitter(root, { durability: 'group' });
  const runId = `ts-${Date.now()}`;
  const config = { strategy: 'ma_cross', grid: { fast: [2, 20], slow: [30, 90] } };
  await emitter.emitRunCreated(runId, 'path-only', config, 'synthetic-1', { lang: 'ts' });
  await emitter.emitRunStarted(runId);
  await emitter.emitPhaseStarted(runId, 'plan', 0);
  const t0 = Date.now();
  const trials: Promise<Position>[] = [];
  for (let t = 0; t < 10; t++) {
    trials.push(emitter.emitTrialRecorded(runId, t, { fast: 2 + t, slow: 40 }, { pnl: t / 10 }));
  }
  await Promise.all(trials);
  await emitter.emitPhaseCompleted(runId, 'plan', Date.now() - t0, { trials: trials.length });
  await emitter.emitBaselineCompleted(runId, 'buy_and_hold', { pnl: 0.05 });
  try {
    await emitter.emit('trial.recorded', { trial_id: 1, params: {}, metrics: { pnl: 'high' } }, { runId });
  } catch (e) {
    if (!(e instanceof SchemaError)) throw e;
  }
  const last = await emitter.emitRunCompleted(runId, { best_pnl: 0.9 }, []);
  await emitter.close();
  return last;
}

main(process.argv[2]).then((pos) => console.log(JSON.stringify(pos)));
