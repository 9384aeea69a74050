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
        print("## Throughput (images/s): PGD-10 inner maximisation (`pgd`) and whole PGD-10 AT step (`train_step`)\n")
        print("harness = `infoat bench`; PyTorch reference = parameters keep requires_grad during the attack, "
              "NCHW; PyTorch tuned = frozen parameters, channels-last. Ratios: best harness layout / PyTorch.\n")
        print("| work | arch | batch | precision | harness NCHW | harness channels-last | PyTorch reference | "
              "PyTorch tuned | × reference | × tuned | epoch s (best harness) | peak GPU MiB harness / PyTorch |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        groups = {}
        for r in rows:
            key = (r.get("work", "train_step"), r["arch"], r["batch_size"], r["precision"])
            impl = r.get("impl", "harness")
            kind = r.get("variant") if impl == "pytorch" else ("cl" if r["channels_last"] else "nchw")
            groups.setdefault(key, {})[(impl, kind)] = r
        for (work, arch, batch, prec), g in groups.items():
            def ips(k):
                r = g.get(k)
                return r["images_per_second"] if r else None

            def fmt(v):
                return f"{v:,.0f}" if v else "–"

            h = [v for v in (ips(("harness", "nchw")), ips(("harness", "cl"))) if v]
            best = max(h) if h else None
            ref, tuned = ips(("pytorch", "reference")), ips(("pytorch", "tuned"))
            ratio = lambda a, b: f"{a / b:.2f}" if a and b else "–"  # noqa: E731
            best_row = None
            for k in (("harness", "nchw"), ("harness", "cl")):
                if g.get(k) and ips(k) == best:
                    best_row = g[k]
            mem_h = best_row.get("peak_gpu_mib") if best_row else None
            tuned_row = g.get(("pytorch", "tuned"))
            mem_p = tuned_row.get("peak_gpu_mib") if tuned_row else None
            mem = f"{mem_h:,.0f} / {mem_p:,.0f}" if mem_h and mem_p else "–"
            epoch = f"{best_row['epoch_seconds']:.1f}" if best_row else "–"
            print(f"| {work} | {arch} | {batch} | {prec} | {fmt(ips(('harness', 'nchw')))} | {fmt(ips(('harness', 'cl')))} | "
                  f"{fmt(ref)} | {fmt(tuned)} | {ratio(best, ref)} | {ratio(best, tuned)} | {epoch} | {mem} |")
        print()

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
