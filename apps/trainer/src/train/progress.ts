import cliProgress from 'cli-progress';

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none';

interface StepInfo {
  step: number;
  loss: number;
  ceLoss: number;
  lr: number;
  gradNorm: number;
  skipped: boolean;
  tokensPerSec: number;
  elapsedSec: number;
  router: { maxOverMean: number }[];
}

function fmtTime(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '--:--';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return `${h > 0 ? `${h}:` : ''}${String(m).padStart(h > 0 ? 2 : 1, '0')}:${String(r).padStart(2, '0')}`;
}

/**
 * Training progress: a cli-progress bar (step, loss, BPB, tokens/s, ETA) on a TTY, plain log lines
 * every `logEvery` steps otherwise.
 */
export class Progress {
  private bar: cliProgress.SingleBar | undefined;
  private readonly mode: 'bar' | 'lines' | 'none';
  private readonly started = performance.now();
  private readonly firstStep: number;
  private tps = 0;

  constructor(mode: ProgressMode, private readonly total: number, start: number, private readonly log: (s: string) => void, private readonly logEvery = 10) {
    this.mode = mode === 'auto' ? (process.stderr.isTTY ? 'bar' : 'lines') : mode;
    this.firstStep = start;
    if (this.mode === 'bar') {
      this.bar = new cliProgress.SingleBar(
        {
          format: 'train {bar} {value}/{total} | loss {loss} | bpb {bpb} | val {val} | {tps} tok/s | ETA {etaText}',
          barsize: 24,
          hideCursor: true,
          stream: process.stderr,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, start, { loss: '-', bpb: '-', val: '-', tps: '-', etaText: '--:--' });
    }
  }

  private eta(step: number): number {
    const done = step + 1 - this.firstStep;
    const sec = (performance.now() - this.started) / 1000;
    return done > 0 ? (sec / done) * (this.total - step - 1) : NaN;
  }

  /** After each step: `bpb` is the training loss in bits per byte (an estimate), `val` the last validation BPB. */
  update(m: StepInfo, bpb: number, val: number | undefined): void {
    this.tps = this.tps === 0 ? m.tokensPerSec : 0.9 * this.tps + 0.1 * m.tokensPerSec;
    if (this.mode === 'bar') {
      this.bar!.update(m.step + 1, { loss: m.loss.toFixed(3), bpb: bpb.toFixed(3), val: val === undefined ? '-' : val.toFixed(3), tps: Math.round(this.tps), etaText: fmtTime(this.eta(m.step)) });
    } else if (this.mode === 'lines' && ((m.step + 1) % this.logEvery === 0 || m.step === this.firstStep || m.step + 1 === this.total || m.skipped)) {
      const imb = m.router.length ? Math.max(...m.router.map((r) => r.maxOverMean)) : NaN;
      this.log(
        `step ${m.step + 1}/${this.total} loss ${m.loss.toFixed(4)} (ce ${m.ceLoss.toFixed(4)}, train ~${bpb.toFixed(3)} bpb) lr ${m.lr.toExponential(2)} |g| ${m.gradNorm.toFixed(3)}` +
          `${m.router.length ? ` max/mean load ${imb.toFixed(2)}` : ''} ${Math.round(this.tps)} tok/s elapsed ${fmtTime(m.elapsedSec)} ETA ${fmtTime(this.eta(m.step))}${m.skipped ? ' SKIPPED (non-finite gradients)' : ''}`,
      );
    }
  }

  /** A message between steps (validation results). */
  note(text: string): void {
    if (this.mode === 'none') return;
    if (this.bar) {
      // cli-progress redraws the bar below the text on its next update.
      process.stderr.write(`\r\x1b[K${text}\n`);
      return;
    }
    this.log(text);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
