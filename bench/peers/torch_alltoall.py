#!/usr/bin/env python3
"""PyTorch peer of kiln's NCCL all-to-all benchmark (packages/backend-cuda/test/gpu/nccl-2gpu.mjs --bench).

Usage (same machine, same run, one process per GPU):
  torchrun --nproc_per_node 2 bench/peers/torch_alltoall.py --out torch-alltoall.json

torch.distributed.all_to_all_single on uint8 tensors with the nccl backend, even split, for message
sizes (bytes each rank sends in total) 1 MiB .. 256 MiB, the sizes kiln measures. Timing as on the kiln
side: wall clock around `iters` back-to-back calls, each followed by torch.cuda.synchronize() (kiln
waits for each collective before the next), after 3 warm-ups and a barrier. Rank 0 writes the JSON.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    rank, world = dist.get_rank(), dist.get_world_size()
    results = []
    size = 1 << 20
    while size <= 256 << 20:
        x = torch.empty(size, dtype=torch.uint8, device="cuda")
        y = torch.empty_like(x)
        iters = 10 if size >= 64 << 20 else 25
        for _ in range(3):
            dist.all_to_all_single(y, x)
        torch.cuda.synchronize()
        dist.barrier()
        t = time.perf_counter()
        for _ in range(iters):
            dist.all_to_all_single(y, x)
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t) * 1000 / iters
        alg = size / (ms / 1000) / 1e9
        results.append({"bytes": size, "ms": ms, "algGBps": alg, "busGBps": alg * (world - 1) / world})
        if rank == 0:
            print(f"torch all_to_all_single {size >> 20} MiB: {ms:.3f} ms ({alg:.1f} GB/s)", flush=True)
        del x, y
        size *= 2
    if rank == 0:
        nccl = ".".join(str(v) for v in torch.cuda.nccl.version())
        with open(args.out, "w") as f:
            json.dump({"worldSize": world, "torch": torch.__version__, "nccl": nccl, "device": torch.cuda.get_device_name(), "results": results}, f, indent=2)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
