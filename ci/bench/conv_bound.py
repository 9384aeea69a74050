#!/usr/bin/env python3
"""The fastest a benchmark step can be with libtorch's own convolution and matmul kernels
(issue 9): the sum, over every convolution and linear layer the step runs, of that kernel's
measured time at the step's shapes, with nothing else (no ReLU, pooling, BatchNorm, loss,
projection, allocation or autograd bookkeeping). Any implementation that calls these kernels —
the harness and PyTorch eager both do — needs at least this long, so

    ceiling = batch / bound            (images/s)
    ceiling / PyTorch reference        the largest speed-up over the reference these kernels allow

A second, tighter bound adds the network's ReLU and max-pool layers (forward, and the backward
every gradient pass runs through them), the cheapest of their kernels timed the same way: the
layers SmallCNN cannot do without, which no kernel fusion reachable through libtorch's operators
removes. `with_layer_ops_*` in the output; the share of that ceiling tells how much of a step is
framework (autograd, allocation, dispatch, thread hand-offs) rather than kernels.

Each kernel is timed in both memory formats (NCHW, channels-last) and the faster counts, which
keeps the bound a bound even for an implementation that picks its layout per layer.

Passes per step, with K inner steps (as `infoat bench` and ci/bench/pytorch_peer.py do the work):
  pgd     K x (forward + input gradient through every layer)
  at      pgd + one forward + a backward for weights (input gradient of all but the first layer)
  trades  one clean forward + K x (forward + input gradient) + two forwards (natural and
          adversarial pass) + two backwards for weights
  infoat  as trades (its outer loss also has a natural and an adversarial pass)

    conv_bound.py --arch smallcnn --dataset mnist --batch-size 128 --threads 2
    conv_bound.py --arch resnet18 --dataset cifar10 --batch-size 16 --threads 2 \\
        --results docs/cpu/2026-11-26-dev-vm-heap/throughput.jsonl

With --results (the raw lines of ci/bench/run), each work's ceiling is set beside the PyTorch
reference, the tuned peer and the harness's best layout measured there (fp32 rows).
Prints a table on stderr and one JSON object per work on stdout. CPU only; needs only torch.
"""
import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pytorch_peer import SHAPES, build  # noqa: E402

def load(path):
    """The JSON lines of a results file (none when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def impl_kind(r):
    """The column a measurement belongs to, as `infoat bench --summarize` files it
    (reports/src/bench.rs, ThroughputRow::column)."""
    if r.get("impl", "harness") == "pytorch":
        heap = r.get("heap", "default") != "default"
        return ("pytorch", r.get("variant", "reference") + ("+heap" if heap else ""))
    return ("harness", "cl" if r["channels_last"] else "nchw")

WORKS = ("pgd", "at", "trades", "infoat")


def traced(model, x, types):
    """(module, input shape, output shape) of every module of `types`, in the order one forward
    pass of `x` runs them."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, tuple(i[0].shape), tuple(o.shape))))
             for m in model.modules() if isinstance(m, types)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def layer_shapes(model, x):
    """(module, input shape) of every Conv2d and Linear, in the order the forward pass runs them."""
    return [(m, shape) for m, shape, _ in traced(model, x, (nn.Conv2d, nn.Linear))]


def layer_ops(model, x):
    """(module, input shape) of every ReLU and MaxPool2d module in the order the forward pass runs
    them, a ReLU right before a MaxPool2d moved after it (the harness's SmallCNN order: max
    commutes with ReLU, so the values and the gradients are the same and the ReLU touches a
    quarter of the elements). ReLUs called as functions (F.relu, as the ResNets do) and
    BatchNorm are not seen, which keeps the sum a lower bound."""
    seen = traced(model, x, (nn.ReLU, nn.MaxPool2d))
    out, i = [], 0
    while i < len(seen):
        m, shape, _ = seen[i]
        if isinstance(m, nn.ReLU) and i + 1 < len(seen) and isinstance(seen[i + 1][0], nn.MaxPool2d) \
                and seen[i + 1][1] == shape:
            pool, _, pooled = seen[i + 1]
            out += [(pool, shape), (m, pooled)]
            i += 2
        else:
            out.append((m, shape))
            i += 1
    return out


def op_kernels(m, shape):
    """(pass, callable) for the forward and the input gradient of a ReLU or max-pool layer at
    input `shape`, in both memory formats for a batch of images: ReLU in place (the harness's
    `relu_` on a fresh layer output) and its backward `threshold_backward`; max-pool with the
    argmax indices autograd keeps, or without them where no gradient follows (the faster counts),
    and its backward. They have no weight gradient."""
    out = []
    formats = [torch.contiguous_format, torch.channels_last] if len(shape) == 4 else [torch.contiguous_format]
    for fmt in formats:
        x = (torch.rand(shape) * 2 - 1).contiguous(memory_format=fmt)
        if isinstance(m, nn.ReLU):
            y = x.relu()
            g = torch.rand_like(y)
            out += [("forward", lambda x=x: x.relu_()),
                    ("input_grad", lambda g=g, y=y: torch.ops.aten.threshold_backward(g, y, 0))]
        else:
            a = (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
            y, idx = torch.ops.aten.max_pool2d_with_indices(x, *a)
            g = torch.rand_like(y)
            out += [("forward", lambda x=x, a=a: torch.ops.aten.max_pool2d_with_indices(x, *a)),
                    ("forward", lambda x=x, a=a: torch.ops.aten.max_pool2d(x, *a)),
                    ("input_grad", lambda g=g, x=x, a=a, idx=idx:
                        torch.ops.aten.max_pool2d_with_indices_backward(g, x, *a, idx))]
    return out


def kernels(m, shape):
    """(pass, callable) for the forward, input-gradient and weight (+ bias) gradient kernels of
    layer `m` at input `shape`, in both memory formats for a convolution."""
    out = []
    formats = [torch.contiguous_format, torch.channels_last] if isinstance(m, nn.Conv2d) else [None]
    for fmt in formats:
        x = torch.rand(shape)
        w = m.weight.detach().clone()
        b = None if m.bias is None else m.bias.detach().clone()
        if isinstance(m, nn.Conv2d):
            # `.to`, not `.contiguous`: a one-channel tensor is contiguous in both formats, and only
            # `.to` gives it the channels-last strides that select the channels-last kernels.
            x, w = x.to(memory_format=fmt), w.to(memory_format=fmt)
            args = (m.stride, m.padding, m.dilation, False, [0, 0], m.groups)
            bias_sizes = None if b is None else [b.shape[0]]

            def forward(x=x, w=w, b=b):
                return F.conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups)

            def backward(mask, g=torch.rand_like(forward()), x=x, w=w, bs=bias_sizes, a=args):
                return torch.ops.aten.convolution_backward(g, x, w, bs, *a, mask)

            out += [
                ("forward", forward),
                ("input_grad", lambda bw=backward: bw([True, False, False])),
                ("weight_grad", lambda bw=backward, b=b: bw([False, True, b is not None])),
            ]
        else:
            g = torch.rand(shape[0], m.out_features)
            out += [
                ("forward", lambda x=x, w=w, b=b: F.linear(x, w, b)),
                ("input_grad", lambda g=g, w=w: g.mm(w)),
                ("weight_grad", lambda g=g, x=x: (g.t().mm(x), g.sum(0))),
            ]
    return out


def kernel_times(shapes, rounds, calls, which=kernels):
    """Per layer, seconds for its forward, input gradient and weight gradient: for each kernel
    the fastest of `rounds` means of `calls` calls, the faster memory format counting. Rounds
    visit every kernel in turn, so a slow spell of the machine costs one round, not one kernel;
    the minimum keeps the sum a lower bound on a machine whose timings drift. `which` gives a
    layer's kernels (`kernels` for convolutions and linear layers, `op_kernels` for ReLU and
    max-pool, which have no weight gradient)."""
    ops = [(i, name, fn) for i, (m, s) in enumerate(shapes) for name, fn in which(m, s)]
    best = [{} for _ in shapes]
    with torch.no_grad():
        for _i, _name, fn in ops:
            for _ in range(3):
                fn()
        for _ in range(rounds):
            for i, name, fn in ops:
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                t = (time.perf_counter() - t0) / calls
                best[i][name] = min(best[i].get(name, t), t)
    return best


def bound(layers, work, k, first_takes_the_input=True):
    """Seconds of kernel time one step of `work` needs at least (see the module doc). The
    first convolution's input gradient is needed only by the attack; a ReLU's or a max-pool's
    (`first_takes_the_input` false) by every backward, since they all lie after it."""
    fwd = sum(t["forward"] for t in layers)
    dgrad_all = sum(t["input_grad"] for t in layers)
    dgrad_inner = dgrad_all - (layers[0]["input_grad"] if first_takes_the_input and layers else 0.0)
    wgrad = sum(t.get("weight_grad", 0.0) for t in layers)
    attack = k * (fwd + dgrad_all)
    if work == "pgd":
        return attack
    if work == "at":
        return attack + fwd + dgrad_inner + wgrad
    return fwd + attack + 2 * (fwd + dgrad_inner + wgrad)


# `impl_kind` columns under the names this script reports them by.
WHO = {("harness", "nchw"): "harness NCHW", ("harness", "cl"): "harness channels-last"}


def measured(rows, arch, dataset, batch, work):
    """images/s of the PyTorch reference, tuned peer and the harness's best layout in the
    fp32 rows of a ci/bench/run results file (medians when there are several rounds)."""
    cols = {}
    for r in rows:
        if (r.get("arch"), r.get("dataset"), r.get("batch_size"), r.get("precision")) != (arch, dataset, batch, "fp32"):
            continue
        rw = r.get("work")
        if work == "pgd" and rw != "pgd":
            continue
        if work != "pgd" and (rw != "train_step" or r.get("method") != work):
            continue
        kind = impl_kind(r)
        cols.setdefault(WHO.get(kind, kind[1].replace("+heap", " + heap")), []).append(r["images_per_second"])
    out = {who: median(v) for who, v in cols.items()}
    layouts = [v for who, v in out.items() if who.startswith("harness ")]
    if layouts:
        out["harness"] = max(layouts)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="smallcnn")
    ap.add_argument("--dataset", default="mnist", choices=sorted(SHAPES))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=7,
                    help="rounds over all kernels (per kernel the fastest round counts)")
    ap.add_argument("--calls", type=int, default=10, help="calls per repeat")
    ap.add_argument("--results", help="ci/bench/run raw lines (throughput.jsonl) to compare against")
    a = ap.parse_args()
    if a.results and not os.path.exists(a.results):
        ap.error(f"--results {a.results}: no such file (the throughput.jsonl ci/bench/run writes)")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c, h, w, k, _eps, _n = SHAPES[a.dataset]
    model = build(a.arch, c, k).eval()
    x = torch.rand(a.batch_size, c, h, w)
    layers = kernel_times(layer_shapes(model, x), a.repeats, a.calls)
    ops = kernel_times(layer_ops(model, x), a.repeats, a.calls, which=op_kernels)
    results = load(a.results) if a.results else None
    print(f"{a.arch} {a.dataset} batch {a.batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}: "
          f"{len(layers)} conv/linear layers; per pass forward {1e3 * sum(t['forward'] for t in layers):.2f} ms, "
          f"input gradient {1e3 * sum(t['input_grad'] for t in layers):.2f} ms, "
          f"weight gradient {1e3 * sum(t['weight_grad'] for t in layers):.2f} ms; "
          f"{len(ops)} ReLU/max-pool layers: forward {1e3 * sum(t['forward'] for t in ops):.2f} ms, "
          f"input gradient {1e3 * sum(t['input_grad'] for t in ops):.2f} ms", file=sys.stderr)
    for work in WORKS:
        secs = bound(layers, work, a.inner_steps)
        ceiling = a.batch_size / secs
        full = secs + bound(ops, work, a.inner_steps, first_takes_the_input=False)
        out = {"arch": a.arch, "dataset": a.dataset, "batch_size": a.batch_size, "work": work,
               "inner_steps": a.inner_steps, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "bound_ms_per_step": 1e3 * secs, "ceiling_images_per_second": ceiling,
               "with_layer_ops_bound_ms_per_step": 1e3 * full,
               "with_layer_ops_ceiling_images_per_second": a.batch_size / full}
        line = f"  {work:7s} bound {1e3 * secs:8.1f} ms/step  ceiling {ceiling:8.1f} images/s"
        if ops:  # module ReLUs and max-pools seen (SmallCNN; the ResNets call F.relu)
            line += f"  (with ReLU and max-pool {1e3 * full:6.1f} ms, {a.batch_size / full:6.1f} images/s)"
        if results is not None:
            got = measured(results, a.arch, a.dataset, a.batch_size, work)
            out["measured_images_per_second"] = got
            if "reference" in got:
                out["ceiling_over_reference"] = ceiling / got["reference"]
                line += f"  = {ceiling / got['reference']:.2f}x the reference ({got['reference']:.0f})"
            if "tuned" in got:
                line += f", {ceiling / got['tuned']:.2f}x tuned ({got['tuned']:.0f})"
            if "harness" in got:
                share, share_full = got["harness"] / ceiling, got["harness"] * full / a.batch_size
                out["harness_share_of_ceiling"] = share
                out["harness_share_of_with_layer_ops_ceiling"] = share_full
                line += f"; harness {got['harness']:.0f} = {100 * share:.0f} % of it"
                if ops:
                    line += f", {100 * share_full:.0f} % with ReLU and max-pool"
        print(line, file=sys.stderr)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
