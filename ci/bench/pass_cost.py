#!/usr/bin/env python3
"""What one pass through a model costs at a batch size, timed in PyTorch on its own (issue 24):
a forward without gradients, and a forward whose input tracks gradients plus the input gradient
(`torch.autograd.grad(loss, [x])`, the parameters frozen). ci/bench/aa multiplies these by the
images each AutoAttack component sent through the model to get the least time those passes can
take -- a bound on any implementation that makes the same passes through the same kernels.

    pass_cost.py MODEL.pt --shape C,H,W --batch-sizes 93,43,32 [--threads 2] [--rounds 7]
                 [--device cpu]

Each cell is timed in both memory formats (NCHW and channels-last, the model converted with
`.to(memory_format=...)`) and the faster counts, so the bound holds for an implementation that
picks either. Every cell is visited once per round (this VM drifts by tens of per cent between
runs); each keeps the fastest of --rounds rounds of repetitions lasting about 0.2 s.
Prints one JSON object: {"threads": T, "device": D, "costs": {"B": {"forward_s": ...,
"gradient_s": ..., "forward_format": ..., "gradient_format": ...}}} with seconds per batch of B.
On CUDA, TF32 is off (IEEE float32, as the harness evaluates). Random inputs in [0, 1]; the loss is the sum of the logits (its backward costs what a
cross-entropy's does, to within one small kernel).
"""
import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crosscheck"))
from common import ieee_fp32  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--shape", required=True, help="C,H,W of one input image")
    p.add_argument("--batch-sizes", required=True, help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shape = [int(s) for s in a.shape.split(",")]
    sizes = sorted({int(b) for b in a.batch_sizes.split(",") if b.strip() and int(b) > 0})
    if len(shape) != 3 or not sizes:
        sys.exit("pass_cost.py: --shape wants C,H,W and --batch-sizes at least one positive size")
    device = torch.device(a.device)
    ieee_fp32(device)  # the passes the harness's evaluation makes: no TF32 on CUDA

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    models = {}
    for fmt, mf in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        m = torch.jit.load(a.model, map_location=device).eval()
        for q in m.parameters():
            q.requires_grad_(False)
        models[fmt] = (m.to(memory_format=mf), mf)

    # Every cell (batch size x pass x format) is visited once per round, so that this machine's
    # drift spreads over all of them; each cell keeps its fastest round. A cell's repetitions per
    # round make it last about a fifth of a second.
    cells = []
    for b in sizes:
        x0 = torch.rand([b] + shape, device=device)
        for kind in ("forward", "gradient"):
            for fmt, (m, mf) in models.items():
                x = x0.contiguous(memory_format=mf)

                def forward(m=m, x=x):
                    with torch.no_grad():
                        m(x)
                    sync()

                def gradient(m=m, x=x):
                    xi = x.clone().requires_grad_(True)
                    torch.autograd.grad(m(xi).sum(), [xi])
                    sync()

                fn = forward if kind == "forward" else gradient
                fn()
                t0 = time.perf_counter()
                fn()
                once = max(time.perf_counter() - t0, 1e-5)
                cells.append({"batch": b, "kind": kind, "format": fmt, "fn": fn,
                              "reps": max(1, min(100, int(0.2 / once))), "best": float("inf")})
    for _ in range(a.rounds):
        for c in cells:
            t0 = time.perf_counter()
            for _ in range(c["reps"]):
                c["fn"]()
            c["best"] = min(c["best"], (time.perf_counter() - t0) / c["reps"])

    costs = {}
    for b in sizes:
        cell = {}
        for kind in ("forward", "gradient"):
            timed = {c["format"]: c["best"] for c in cells if c["batch"] == b and c["kind"] == kind}
            fmt = min(timed, key=timed.get)
            cell[f"{kind}_s"] = timed[fmt]
            cell[f"{kind}_format"] = fmt
            cell[f"{kind}_by_format_s"] = timed
        costs[str(b)] = cell
        print(f"[pass-cost] batch {b}: forward {1e3 * cell['forward_s']:.2f} ms ({cell['forward_format']}), "
              f"forward + input gradient {1e3 * cell['gradient_s']:.2f} ms ({cell['gradient_format']})",
              file=sys.stderr)
    print(json.dumps({"model": a.model, "threads": torch.get_num_threads(), "device": str(device),
                      "torch": torch.__version__, "rounds": a.rounds, "costs": costs}))


if __name__ == "__main__":
    main()
