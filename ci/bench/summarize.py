#!/usr/bin/env python3
"""Summarises a ci/gpu-check (or ci/bench/run) result folder as Markdown: agreement of the
device with the CPU, PGD-10 AT throughput of the harness beside PyTorch eager with the ratios,
peak memory, and the largest batch that fits.

    summarize.py DIR
"""
import json
import os
import sys


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def impl_kind(r):
    """The column a measurement belongs to."""
    if r.get("impl", "harness") == "pytorch":
        heap = r.get("heap", "default") != "default"
        return ("pytorch", r.get("variant", "reference") + ("+heap" if heap else ""))
    return ("harness", "cl" if r["channels_last"] else "nchw")


def grouped(rows):
    """Rows by (work, arch, method, batch, precision), then by column ([`impl_kind`])."""
    groups = {}
    for r in rows:
        key = (r.get("work", "train_step"), r["arch"], r.get("method", "at"), r["batch_size"], r["precision"])
        groups.setdefault(key, {}).setdefault(impl_kind(r), []).append(r)
    return groups


def med(rs, field):
    """Median of `field` over the rows that have it; None when none does."""
    vals = [r[field] for r in rs if r.get(field)]
    return median(vals) if vals else None


def ips_of(g, kind):
    """Median images/s of column `kind` in group `g`."""
    return med(g.get(kind, []), "images_per_second")


def harness_best(g):
    """The harness's NCHW and channels-last medians in group `g`, and the better of the two."""
    nchw, cl = ips_of(g, ("harness", "nchw")), ips_of(g, ("harness", "cl"))
    return nchw, cl, max([v for v in (nchw, cl) if v], default=None)


def fmt(v):
    return f"{v:,.0f}" if v else "–"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"


def throughput(groups):
    """One row per (work, arch, method, batch, precision); each cell the median images/s over
    the rounds that measured it (ci/bench/run alternates the implementations in every round)."""
    print("## Throughput (images/s)\n")
    print("`pgd`: the PGD-10 inner maximisation alone; `train_step`: a whole training step of the "
          "method (inner PGD-10 included); `apgd_ce`: one APGD-CE attack (100 iterations) on the batch. "
          "harness = `infoat bench` (NCHW or channels-last); PyTorch reference = parameters keep "
          "requires_grad during the attack, NCHW; PyTorch tuned = frozen parameters, channels-last; "
          "tuned + heap = tuned with the harness's heap settings (GLIBC_TUNABLES). Each cell is the "
          "median of n rounds. Ratios: best harness layout / PyTorch at the same precision; for bf16 "
          "rows, × reference also gives the ratio to the fp32 reference.\n")
    print("| work | arch | method | batch | precision | n | harness NCHW | harness channels-last | PyTorch reference | "
          "PyTorch tuned | PyTorch tuned + heap | × reference | × tuned | × tuned + heap | epoch s (best harness) | "
          "peak GPU MiB harness / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (work, arch, method, batch, prec), g in groups.items():
        nchw, cl, best = harness_best(g)
        ref, tuned = ips_of(g, ("pytorch", "reference")), ips_of(g, ("pytorch", "tuned"))
        heap = ips_of(g, ("pytorch", "tuned+heap"))
        x_ref = ratio(best, ref)
        if prec != "fp32":
            ref32 = ips_of(groups.get((work, arch, method, batch, "fp32"), {}), ("pytorch", "reference"))
            if ref32:
                x_ref += f" ({ratio(best, ref32)} × fp32)"
        best_rows = g.get(("harness", "cl" if best == cl else "nchw"), [])
        mem_h, mem_p = med(best_rows, "peak_gpu_mib"), med(g.get(("pytorch", "tuned"), []), "peak_gpu_mib")
        mem = f"{mem_h:,.0f} / {mem_p:,.0f}" if mem_h and mem_p else "–"
        train_len = best_rows[0]["epoch_seconds"] * best_rows[0]["images_per_second"] if best_rows else None
        epoch = f"{train_len / best:.1f}" if train_len and best else "–"
        n = max(len(v) for v in g.values())
        print(f"| {work} | {arch} | {method} | {batch} | {prec} | {n} | {fmt(nchw)} | {fmt(cl)} | {fmt(ref)} | "
              f"{fmt(tuned)} | {fmt(heap)} | {x_ref} | {ratio(best, tuned)} | {ratio(best, heap)} | {epoch} | {mem} |")
    print()


def graphed(groups):
    """PyTorch with the PGD attack captured in one CUDA graph (pytorch_peer.py --graph) beside
    PyTorch eager in the same variant and the harness's best layout on the same work."""
    cells = [(key, g, kind) for key, g in groups.items() for kind in g
             if kind[0] == "pytorch" and kind[1].endswith("+graph")]
    if not cells:
        return
    print("## PyTorch with the attack in a CUDA graph (images/s)\n")
    print("`pytorch_peer.py --graph`: the whole PGD attack captured once and replayed each step; the "
          "outer training pass stays eager. Medians over the runs.\n")
    print("| work | arch | method | batch | precision | variant | graphed | PyTorch same variant, eager | "
          "× eager | harness best | harness / graphed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (work, arch, method, batch, prec), g, kind in cells:
        base = kind[1][: -len("+graph")]
        gv, eager, best = ips_of(g, kind), ips_of(g, ("pytorch", base)), harness_best(g)[2]
        print(f"| {work} | {arch} | {method} | {batch} | {prec} | {base} | {fmt(gv)} | {fmt(eager)} | "
              f"{ratio(gv, eager)} | {fmt(best)} | {ratio(best, gv)} |")
    print()


def profiles(rows):
    """How busy the device is during a step (pytorch_peer.py --profile on CUDA)."""
    rows = [r for r in rows if isinstance(r.get("profile"), dict)]
    if not rows:
        return
    print("## Where a step's time goes (PyTorch, torch.profiler)\n")
    print("Device events: kernels and copies the GPU ran in one profiled step; busy: their summed time; "
          "busy share: busy / the unprofiled ms per step (low: the step waits on kernel launches).\n")
    print("| work | arch | batch | precision | variant | ms/step | device events | busy ms | busy share | "
          "mean event µs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = r["profile"]
        head = (f"| {r.get('work')} | {r['arch']} | {r['batch_size']} | {r['precision']} | {r.get('variant')} | "
                f"{r['ms_per_step']:.1f} |")
        if "error" in p:
            print(f"{head} profile failed: {p['error']} | | | |")
        elif "device_events" in p:
            print(f"{head} {p['device_events']:,} | {p['device_busy_ms']:.1f} | "
                  f"{100 * p['device_busy_fraction']:.0f} % | {p['mean_event_us']:.1f} |")
    print()


def main():
    d = sys.argv[1]
    print(f"# Results in {d}\n")
    machine = os.path.join(d, "machine.txt")
    if os.path.exists(machine):
        print("```\n" + open(machine).read().strip() + "\n```\n")

    agree = load(os.path.join(d, "agreement.jsonl"))
    if agree:
        print("## Agreement with the CPU (float32 reference, same weights and inputs)\n")
        print("| arch | device | precision | layout | n | logits rel. max diff | argmax agree | "
              "grad sign agree | grad cosine | PGD step same dir. |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in agree:
            layout = "channels-last" if r["channels_last"] else "NCHW"
            print(f"| {r['arch']} | {r['device']} | {r['precision']} | {layout} | {r['n']} | "
                  f"{r['logits_rel_max_diff']:.2e} | {r['argmax_agreement']:.4f} | {r['grad_sign_agreement']:.4f} | "
                  f"{r['grad_cosine']:.6f} | {r['pgd_step_agreement']:.4f} |")
        print()

    rows = load(os.path.join(d, "throughput.jsonl"))
    if rows:
        groups = grouped(rows)
        throughput(groups)
        graphed(groups)
    profiles(load(os.path.join(d, "profile.jsonl")))

    mb = load(os.path.join(d, "max_batch.jsonl"))
    if mb:
        print("## Largest batch whose PGD-10 AT step fits\n")
        print("| arch | precision | channels-last | max batch | search limit |")
        print("|---|---|---|---|---|")
        for r in mb:
            print(f"| {r['arch']} | {r['precision']} | {r['channels_last']} | {r['max_batch']} | {r['limit']} |")
        print()

    fails = os.path.join(d, "failures.txt")
    if os.path.exists(fails) and open(fails).read().strip():
        print("## Failures\n\n```\n" + open(fails).read().strip() + "\n```")


if __name__ == "__main__":
    main()
