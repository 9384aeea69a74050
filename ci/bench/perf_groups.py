#!/usr/bin/env python3
"""Where a benchmark's CPU time goes, from `perf report` (issue 24, goal 2): the samples of a
`perf record` of `infoat bench` (or of the PyTorch peer) grouped by what the code is, so a
step's time can be set beside ci/bench/conv_bound.py's kernel ceiling without instrumenting
anything (torch.profiler's per-op hooks more than doubled a SmallCNN PGD step and mostly
inflated the small ops: it was tried and is not used).

  convolution    oneDNN: its JIT-generated kernels ([JIT] code) and its C++ driver (dnnl::)
  linear         MKL's sgemm (the fully connected layers)
  relu           ATen's threshold (ReLU's backward) and clamp_min (ReLU) kernels
  max-pool       ATen's max-pool forward and backward
  fill/copy      ATen's fill and copy kernels
  openmp wait    libgomp: threads spinning at the end of a parallel region for the others
  allocator      glibc malloc/free and the kernel (page faults, zeroing pages)
  other          the rest: ATen's dispatch, autograd's engine, the harness's own code

    perf record -F 999 -o pgd.data -- infoat bench --arch smallcnn --dataset mnist \\
        --batch-size 128 --work pgd --channels-last --steps 10
    perf report -i pgd.data --no-children --sort dso,sym --stdio | ci/bench/perf_groups.py

Reads the report on stdin; prints each group's share of the samples (both threads' samples
together: a share of 10 % on 2 threads is 10 % of the wall time on each) and, with --ms-per-step,
the milliseconds of a step each group stands for. One JSON object on stdout, a table on stderr.
"""
import argparse
import json
import re
import sys

# (group, test on the shared object, test on the symbol), the first that matches wins.
RULES = [
    ("convolution", lambda dso, sym: dso.startswith("[JIT]") or "dnnl::" in sym),
    ("linear", lambda dso, sym: "mkl_" in sym or "sgemm" in sym),
    ("relu", lambda dso, sym: "threshold_kernel" in sym or "clamp_min" in sym),
    ("max-pool", lambda dso, sym: "max_pool" in sym),
    ("fill/copy", lambda dso, sym: "fill_kernel" in sym or "copy_kernel" in sym),
    ("openmp wait", lambda dso, sym: dso.startswith("libgomp")),
    ("allocator", lambda dso, sym: dso.startswith("[kernel") or re.search(r"\b(_int_free|_int_malloc|malloc|free|malloc_consolidate|cfree|unlink_chunk)\b", sym) is not None),
]
GROUPS = [g for g, _ in RULES] + ["other"]

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[[.k]\]\s+(.*)$")


def group(dso, sym):
    for g, test in RULES:
        if test(dso, sym):
            return g
    return "other"


def parse(lines):
    """Per group, the percentage of samples, from `perf report --sort dso,sym --stdio` lines."""
    shares = {g: 0.0 for g in GROUPS}
    for line in lines:
        m = LINE.match(line)
        if m:
            shares[group(m.group(2), m.group(3))] += float(m.group(1))
    return shares


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ms-per-step", type=float, help="the benchmark's wall time per step, to turn shares into ms")
    a = ap.parse_args()
    shares = parse(sys.stdin)
    total = sum(shares.values())
    if total <= 0:
        sys.exit("perf_groups.py: no sample lines on stdin; pipe `perf report --no-children --sort dso,sym --stdio` into it")
    out = {"share_percent": shares, "total_percent": total}
    print(f"  {'group':12s} {'share':>7s}" + (f" {'ms/step':>8s}" if a.ms_per_step else ""), file=sys.stderr)
    if a.ms_per_step:
        out["ms_per_step"] = a.ms_per_step
        out["ms"] = {g: a.ms_per_step * s / total for g, s in shares.items()}
    for g in GROUPS:
        row = f"  {g:12s} {shares[g]:6.1f}%"
        if a.ms_per_step:
            row += f" {out['ms'][g]:8.1f}"
        print(row, file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
