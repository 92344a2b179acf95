#!/usr/bin/env python3
"""PyTorch peer of bench/train-step.bench.mjs: training-step throughput on the CPU.

Usage (the JS bench runs it; by hand, get the config from the JS side first):
  node bench/train-step.bench.mjs --write-config /tmp/tiny.json
  python3 bench/peers/train_step_torch.py --config /tmp/tiny.json --threads 2 --shapes 4x64,16x128

Builds transformers' DeepseekV3ForCausalLM from the config.json kiln writes for its `tiny` preset
(toConfigJson: the same keys, no MTP layers: transformers has none) in float32 on the CPU with
torch.set_num_threads(THREADS), and times training steps on a fixed batch of random token ids (the
same LCG as the JS side): zero_grad, forward, mean cross-entropy of the next token, backward,
global-norm clipping at 1.0 and torch.optim.AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on
tensors of two or more dimensions, as kiln's AdamW). Warm-up steps first, then the median of the
timed steps. Prints one JSON line (the last line of stdout); on failure {"error": ...}.
"""
import argparse
import json
import os
import statistics
import sys
import time
import traceback


# Set by main() from --device / --dtype (the CPU benchmark: cpu, fp32).
DEVICE = "cpu"
DTYPE = None

def lcg_ids(b, t, vocab, seed):
    s = seed & 0xFFFFFFFF
    out = []
    for _ in range(b * (t + 1)):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(s % vocab)
    return out


def build(cfg_path, experts_eager):
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    with open(cfg_path) as fh:
        d = json.load(fh)
    try:
        cfg = DeepseekV3Config.from_dict(d)
    except Exception:  # noqa: BLE001
        cfg = DeepseekV3Config(**d)
    if experts_eager:
        for attr in ("_experts_implementation", "experts_implementation"):
            try:
                setattr(cfg, attr, "eager")
            except Exception:  # noqa: BLE001
                pass
        try:
            cfg._attn_implementation = "eager"
        except Exception:  # noqa: BLE001
            pass
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(cfg).to(dtype=DTYPE, device=DEVICE)
    model.train()
    return model


def run_shape(model, b, t, vocab, warmup, steps, lr):
    import torch
    import torch.nn.functional as F

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95), eps=1e-8,
    )
    batch = torch.tensor(lcg_ids(b, t, vocab, 1234), dtype=torch.long).view(b, t + 1).to(DEVICE)
    inputs = batch[:, :t].contiguous()
    targets = batch[:, 1:].contiguous()
    params = [p for p in model.parameters() if p.requires_grad]
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.item()))

    for _ in range(warmup):
        step()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    ms = statistics.median(times)
    return {
        "batch": b, "seqLen": t, "tokens": b * t, "precision": "bf16" if DTYPE != torch.float32 else "fp32", "side": "torch",
        "peakAllocatedBytes": torch.cuda.max_memory_allocated() if DEVICE == "cuda" else None,
        "medianMs": ms, "minMs": min(times), "timesMs": times, "tokensPerSec": b * t / (ms / 1000),
        "firstLoss": losses[0], "lastLoss": losses[-1],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--shapes", default="4x64,16x128")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    global DEVICE, DTYPE
    import torch
    DEVICE = args.device
    DTYPE = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    out = {}
    try:
        import torch
        import transformers

        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except Exception:  # noqa: BLE001
            pass
        out.update({
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu",
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
            "mkl": bool(torch.backends.mkl.is_available()),
            "cpuCapability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        })
        with open(args.config) as fh:
            vocab = json.load(fh)["vocab_size"]
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        results = []
        fallback = None
        experts_eager = False
        for b, t in shapes:
            model = build(args.config, experts_eager)
            try:
                r = run_shape(model, b, t, vocab, args.warmup, args.steps, args.lr)
            except Exception as e:  # noqa: BLE001 - e.g. a grouped-mm experts kernel without CPU backward
                if experts_eager:
                    raise
                fallback = f"default implementations failed ({type(e).__name__}: {e}); eager attention and experts used"
                print(f"peer: {fallback}", file=sys.stderr, flush=True)
                experts_eager = True
                model = build(args.config, experts_eager)
                r = run_shape(model, b, t, vocab, args.warmup, args.steps, args.lr)
            results.append(r)
            print(f"peer: {b}x{t}: {r['medianMs']:.1f} ms/step, {r['tokensPerSec']:.0f} tokens/s", file=sys.stderr, flush=True)
        out["parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        out["attnImplementation"] = getattr(model.config, "_attn_implementation", None)
        out["expertsImplementation"] = getattr(model.config, "_experts_implementation", None)
        out["fallback"] = fallback
        out["results"] = results
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    if "--device" not in sys.argv or sys.argv[sys.argv.index("--device") + 1] != "cuda":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU benchmark keeps torch off the GPU
    main()
