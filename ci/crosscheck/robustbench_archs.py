#!/usr/bin/env python3
"""RobustBench's model-zoo architectures against the harness's (issue 23): each architecture is
built from robustbench 1.1.1's own definitions (the files of the wheel ci/bootstrap-robustbench
unpacks, loaded by path: they need only torch), given random weights and BatchNorm statistics
calibrated on the real test images, saved with torch.save as RobustBench ships checkpoints (the
variants rotate: a bare state dict, {"state_dict": ...}, {"model": ...}, "module."-prefixed keys,
beside training state, the legacy pre-1.6 format),
then loaded by `infoat logits --checkpoint` and the logits compared on the same real images.

  robustbench_archs.py check --robustbench DIR --infoat BIN [--archs a,b] [--tol 1e-4] [--keep DIR]
      prints one JSON object: per architecture the largest |logit difference|, the largest
      |logit|, whether the predicted classes agree, the saved variant and the parameter count;
      exit status 1 when any difference exceeds --tol (float32 both sides).
  robustbench_archs.py save --robustbench DIR ARCH OUT
      writes one such checkpoint (for `infoat eval --checkpoint OUT --arch ARCH`).

The images are the project's real CIFAR-10/100 test images (fixtures/data), read from their
original binary format here, so neither side's data loader is trusted by the other.
"""
import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = {
    "cifar10": (os.path.join(ROOT, "fixtures/data/cifar10/test_batch.bin"), 1),
    "cifar100": (os.path.join(ROOT, "fixtures/data/cifar100/test.bin"), 2),
}


def load_module(rb_dir, name):
    path = os.path.join(rb_dir, "robustbench", "model_zoo", "architectures", name + ".py")
    spec = importlib.util.spec_from_file_location("rb_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def builders(rb_dir):
    """Harness --arch name -> (dataset, constructor with RobustBench's arguments as its zoo uses them)."""
    resnet = load_module(rb_dir, "resnet")
    wrn = load_module(rb_dir, "wide_resnet")
    dm = load_module(rb_dir, "dm_wide_resnet")
    nn = torch.nn

    def dm_wrn(depth, width, act, classes=10):
        mean, std = (dm.CIFAR100_MEAN, dm.CIFAR100_STD) if classes == 100 else (dm.CIFAR10_MEAN, dm.CIFAR10_STD)
        return lambda: dm.DMWideResNet(num_classes=classes, depth=depth, width=width, activation_fn=act,
                                       mean=mean, std=std)

    def dm_pre(classes):
        mean, std = (dm.CIFAR100_MEAN, dm.CIFAR100_STD) if classes == 100 else (dm.CIFAR10_MEAN, dm.CIFAR10_STD)
        return lambda: dm.DMPreActResNet(num_classes=classes, depth=18, width=0, activation_fn=dm.Swish,
                                         mean=mean, std=std)

    return {
        "resnet18": ("cifar10", resnet.ResNet18),
        "preact_resnet18": ("cifar10", resnet.PreActResNet18),
        # sub_block1=True as most of RobustBench's TRADES-style entries: an unused group in the file.
        "wrn28_10": ("cifar10", lambda: wrn.WideResNet(depth=28, widen_factor=10, sub_block1=True)),
        "wrn34_10": ("cifar10", lambda: wrn.WideResNet(depth=34, widen_factor=10)),
        "wrn34_15": ("cifar10", lambda: wrn.WideResNet(depth=34, widen_factor=15, sub_block1=True)),
        "wrn34_20": ("cifar10", lambda: wrn.WideResNet(depth=34, widen_factor=20)),
        "wrn70_16": ("cifar10", lambda: wrn.WideResNet(depth=70, widen_factor=16)),
        "dm_wrn28_10": ("cifar10", dm_wrn(28, 10, dm.Swish)),
        "dm_wrn34_20": ("cifar10", dm_wrn(34, 20, dm.Swish)),
        # nn.SiLU, as Wang2023Better_WRN-70-16 builds it.
        "dm_wrn70_16": ("cifar10", dm_wrn(70, 16, nn.SiLU)),
        "dm_wrn106_16": ("cifar10", dm_wrn(106, 16, dm.Swish)),
        "dm_preact_resnet18": ("cifar10", dm_pre(10)),
        # CIFAR-100: the DM models normalise with CIFAR-100's statistics, 100 outputs.
        "dm_preact_resnet18@cifar100": ("cifar100", dm_pre(100)),
        "dm_wrn28_10@cifar100": ("cifar100", dm_wrn(28, 10, dm.Swish, classes=100)),
    }


# What `check` runs by default: every listed architecture except the 415M-parameter WRN-106-16
# and WRN-34-15 (the same code as WRN-34-10/20 at another width); --archs all adds them.
DEFAULT = ["resnet18", "preact_resnet18", "wrn28_10", "wrn34_10", "wrn34_20", "wrn70_16", "dm_wrn28_10",
           "dm_wrn34_20", "dm_wrn70_16", "dm_preact_resnet18", "dm_preact_resnet18@cifar100",
           "dm_wrn28_10@cifar100"]


def images(dataset, n=20):
    path, label_bytes = DATA[dataset]
    with open(path, "rb") as f:
        raw = f.read()
    rec = label_bytes + 3072
    count = min(n, len(raw) // rec)
    x = torch.empty(count, 3, 32, 32)
    for i in range(count):
        pixels = raw[i * rec + label_bytes:(i + 1) * rec]
        x[i] = torch.tensor(list(struct.unpack("3072B", pixels)), dtype=torch.float32).view(3, 32, 32) / 255.0
    return x


def randomised(build, x, seed):
    """The model with PyTorch's default initialisation, random BatchNorm affine parameters, and
    running statistics calibrated on x (one train-mode pass with cumulative averaging), so that
    eval-mode activations stay O(1) in deep networks and every buffer matters."""
    torch.manual_seed(seed)
    model = build()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        model(x)
        for bn in bns:
            bn.momentum = 0.1
    return model.eval()


def save(model, path, variant):
    """torch.save as checkpoints in the wild are written: a bare state dict, wrapped, with
    DataParallel's prefix, beside training state (argparse args, a torch.device, bytes, a set,
    an optimizer's state dict), or in the legacy (pre-1.6) format."""
    sd = model.state_dict()
    legacy = False
    if variant == "module.":
        obj = {"module." + k: v for k, v in sd.items()}
    elif variant == "plain":
        obj = sd
    elif variant == "training-state":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        obj = {"state_dict": sd, "epoch": 100, "args": argparse.Namespace(lr=0.1, arch="x"),
               "device": torch.device("cpu"), "tag": b"\x00\x01", "seen": {1, 2}, "optimizer": opt.state_dict()}
    elif variant == "legacy":
        obj, legacy = sd, True
    else:
        obj = {variant: sd, "epoch": 100}
    if legacy:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)


VARIANTS = ["plain", "state_dict", "model", "module.", "training-state", "legacy"]


def check(args):
    table = builders(args.robustbench)
    names = list(table) if args.archs == "all" else (args.archs.split(",") if args.archs else DEFAULT)
    unknown = [a for a in names if a not in table]
    if unknown:
        sys.exit(f"unknown architecture(s) {unknown}: expected some of {sorted(table)}")
    keep = args.keep
    work = keep or tempfile.mkdtemp(prefix="rb-archs-")
    os.makedirs(work, exist_ok=True)
    results, failed = {}, []
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for i, name in enumerate(names):
        dataset, build = table[name]
        arch = name.split("@")[0]
        t0 = time.time()
        x = images(dataset)
        model = randomised(build, x, seed=1000 + i)
        with torch.no_grad():
            theirs = model(x).float()
        variant = VARIANTS[i % len(VARIANTS)]
        ckpt = os.path.join(work, name.replace("@", "-") + ".pt")
        save(model, ckpt, variant)
        params = sum(p.numel() for p in model.parameters())
        del model
        out = ckpt + ".logits.pt"
        cmd = [args.infoat, "--quiet", "logits", "--checkpoint", ckpt, "--arch", arch, "--dataset", dataset,
               "--data-dir", os.path.dirname(DATA[dataset][0]), "--n", str(len(x)), "--device", "cpu", "--out", out]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            results[name] = {"error": run.stderr.strip()[-2000:], "variant": variant}
            failed.append(name)
            continue
        ours = torch.load(out, weights_only=True)
        diff = (ours - theirs).abs().max().item() if ours.shape == theirs.shape else float("inf")
        agree = bool((ours.argmax(1) == theirs.argmax(1)).all()) if ours.shape == theirs.shape else False
        results[name] = {"max_abs_diff": diff, "max_abs_logit": theirs.abs().max().item(), "agree": agree,
                         "variant": variant, "parameters": params, "images": len(x), "dataset": dataset,
                         "seconds": round(time.time() - t0, 1)}
        if not diff <= args.tol:
            failed.append(name)
        if not keep:
            os.remove(ckpt)
            os.remove(out)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"tolerance": args.tol, "torch": torch.__version__, "architectures": results,
                      "failed": failed}, indent=1))
    return 1 if failed else 0


def save_one(args):
    table = builders(args.robustbench)
    dataset, build = table[args.arch]
    model = randomised(build, images(dataset), seed=7)
    save(model, args.out, "state_dict")
    print(json.dumps({"arch": args.arch.split("@")[0], "dataset": dataset, "out": args.out}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--robustbench", required=True, help="the unpacked wheel (ci/bootstrap-robustbench)")
    c.add_argument("--infoat", required=True, help="the infoat binary")
    c.add_argument("--archs", help="comma-separated harness names (name@cifar100 for CIFAR-100), or 'all'")
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--keep", help="keep the checkpoints and logits in this folder")
    s = sub.add_parser("save")
    s.add_argument("--robustbench", required=True)
    s.add_argument("arch")
    s.add_argument("out")
    args = p.parse_args()
    sys.exit(check(args) if args.cmd == "check" else save_one(args))


if __name__ == "__main__":
    main()
