#!/usr/bin/env python3
"""PyTorch peer of bench/cuda-gemm.bench.mjs: the same GEMM shapes on the same GPU, same run.

Usage (the JS bench runs it with a spec file it writes):
  python3 bench/peers/torch_gemm.py --spec spec.json
spec.json: {"fp8": [[M, N, K], ...], "bf16": [[M, N, K], ...], "f32": [[M, N, K], ...],
            "iters": 30, "flush": true}

* FP8: DeepSeek-V3 blockwise scaling, torch._scaled_mm (PyTorch >= 2.9 dispatches it to cuBLASLt's
  VEC128_32F x BLK128x128_32F modes on sm_90). Operands as PyTorch requires them (ScaledBlas.cpp):
  a [M, K] e4m3 row-major; b = w.t() with w [N, K] row-major (so b is [K, N] column-major);
  scale_a [M, K/128] f32 with strides (1, M) (K-block-major); scale_b [K/128, N/128] f32, the
  transpose of a row-major [N/128, K/128]. Output bf16. If that call is refused, the v2 API
  torch.nn.functional.scaled_mm with ScalingType.BlockWise1x128 / BlockWise128x128 is tried. One
  shape is checked against f64 math on the dequantised operands.
* BF16: a [M, K] @ w[N, K].t() in bf16 (f32 accumulate, cuBLAS). F32: the same in f32 with TF32 off.
Timing: torch.cuda.Event pairs around each call, a 256 MiB buffer overwritten before each call so no
operand stays in L2 (as the kiln side does), median of `iters` after 3 warm-ups. Prints one JSON line
(the last line of stdout); on failure {"error": ...}.
"""
import argparse
import json
import statistics
import sys
import traceback


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    args = ap.parse_args()
    with open(args.spec) as fh:
        spec = json.load(fh)
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    iters = int(spec.get("iters", 30))
    flush = bool(spec.get("flush", True))
    flush_buf = torch.empty(256 << 20, dtype=torch.uint8, device=dev)

    def time_it(fn):
        for _ in range(3):
            fn()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for i in range(iters):
            if flush:
                flush_buf.fill_(i & 0xFF)
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        ts = [s.elapsed_time(e) for s, e in zip(starts, ends)]
        return {"medianMs": statistics.median(ts), "minMs": min(ts), "iters": len(ts)}

    e4m3 = torch.float8_e4m3fn
    FP8_MAX = 448.0

    def quant_rows(x):  # 1x128 blocks along K
        M, K = x.shape
        xb = x.view(M, K // 128, 128)
        s = xb.abs().amax(-1).clamp(min=1e-4) / FP8_MAX
        q = (xb / s[..., None]).to(e4m3).view(M, K)
        return q, s.float()  # s [M, K/128]

    def quant_blocks(w):  # 128x128 blocks; a ragged last row block (N % 128) is padded with zeros
        N, K = w.shape
        Np = (N + 127) // 128 * 128
        wp = torch.nn.functional.pad(w, (0, 0, 0, Np - N))
        wb = wp.view(Np // 128, 128, K // 128, 128)
        s = wb.abs().amax(dim=(1, 3)).clamp(min=1e-4) / FP8_MAX
        q = (wb / s[:, None, :, None]).to(e4m3).view(Np, K)[:N].contiguous()
        return q, s.float()  # s [ceil(N/128), K/128]

    out = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0),
        "cublasLtVersion": None,
        "fp8": [],
        "bf16": [],
        "f32": [],
    }
    api_used = None
    api_errors = []

    def scaled_mm(a, w, sa, sb, which):
        # which: "v1" torch._scaled_mm, "v2" torch.nn.functional.scaled_mm
        scale_a = sa.t().contiguous().t()  # [M, K/128] strides (1, M)
        scale_b = sb.t()  # [K/128, N/128], transpose of row-major [N/128, K/128]
        if which == "v1":
            return torch._scaled_mm(a, w.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)
        from torch.nn.functional import ScalingType, scaled_mm as f_scaled_mm

        return f_scaled_mm(a, w.t(), scale_a, ScalingType.BlockWise1x128, scale_b, ScalingType.BlockWise128x128,
                           output_dtype=torch.bfloat16)

    wcache = {}
    for (M, N, K) in spec.get("fp8", []):
        row = {"M": M, "N": N, "K": K}
        try:
            g = torch.Generator(device=dev).manual_seed(1234 + M)
            x = torch.randn(M, K, device=dev, generator=g)
            a, sa = quant_rows(x)
            if (N, K) not in wcache:
                wcache.clear()
                w = torch.randn(N, K, device=dev, generator=g)
                wcache[(N, K)] = quant_blocks(w)
            wq, sb = wcache[(N, K)]
            scale_a = sa.t().contiguous().t()
            if api_used is None:
                for which in ("v1", "v2"):
                    try:
                        d = scaled_mm(a, wq, sa, sb, which)
                        torch.cuda.synchronize()
                        api_used = which
                        # correctness: f64 math on the dequantised operands
                        ad = a.double().view(M, K // 128, 128) * sa.double()[..., None]
                        sbx = sb.double().repeat_interleave(128, 0)[:N].repeat_interleave(128, 1)  # [N, K]
                        wd = wq.double() * sbx
                        ref = ad.view(M, K) @ wd.t()
                        absref = ad.view(M, K).abs() @ wd.abs().t()
                        err = ((d.double() - ref).abs() / absref.clamp(min=1e-30)).max().item()
                        out["fp8Check"] = {"M": M, "N": N, "K": K, "api": which,
                                           "maxErrOverSumAbs": err,
                                           "relFrobenius": ((d.double() - ref).norm() / ref.norm()).item()}
                        break
                    except Exception as e:  # noqa: BLE001
                        api_errors.append(f"{which}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
                if api_used is None:
                    raise RuntimeError("blockwise scaled_mm unavailable: " + " | ".join(api_errors))
            row["scaledMm"] = time_it(lambda: scaled_mm(a, wq, sa, sb, api_used))
            del x, a, sa, scale_a
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:400]}"
        out["fp8"].append(row)
    wcache.clear()
    out["fp8Api"] = {"v1": "torch._scaled_mm", "v2": "torch.nn.functional.scaled_mm"}.get(api_used)
    out["fp8ApiErrors"] = api_errors

    for dtype, key in ((torch.bfloat16, "bf16"), (torch.float32, "f32")):
        for (M, N, K) in spec.get(key, []):
            row = {"M": M, "N": N, "K": K}
            try:
                a = torch.randn(M, K, device=dev, dtype=dtype)
                w = torch.randn(N, K, device=dev, dtype=dtype)
                wt = w.t()
                row["matmul"] = time_it(lambda: torch.matmul(a, wt))
                del a, w, wt
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:400]}"
            out[key].append(row)
    try:
        import ctypes

        for name in ("libcublasLt.so.13", "libcublasLt.so.12"):
            try:
                lib = ctypes.CDLL(name)
                lib.cublasLtGetVersion.restype = ctypes.c_size_t
                out["cublasLtVersion"] = int(lib.cublasLtGetVersion())
                break
            except OSError:
                pass
    except Exception:  # noqa: BLE001
        pass
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
