#!/usr/bin/env python3
"""A robust CIFAR-shaped ResNet-18 for timing AutoAttack (ci/bench/aa, issue 24): real MNIST
digits zero-padded to 32x32 and repeated over three channels -- CIFAR-10's shape and class count,
not its content (no full CIFAR-10 is reachable here) -- and the harness's ResNet-18 (the
definition of ci/bench/pytorch_peer.py, which carries the harness's parameter names) PGD-AT
trained in plain PyTorch at eps 8/255. Saved as TorchScript (traced; [N, 3, 32, 32] float32 in
[0, 1] -> 10 logits, what `infoat eval --torchscript` takes), and the same test images written as
CIFAR-10's binary `test_batch.bin`, so `infoat eval --dataset cifar10 --data-dir DIR` reads exactly
the images official AutoAttack gets.

    cifar_shaped.py --out DIR [--data-dir MNIST_DIR] [--train-n 20000] [--epochs 1]
                    [--pgd-steps 7] [--eps 8/255] [--batch-size 128] [--device cuda] [--seed 0]

Writes DIR/model.pt, DIR/test_batch.bin (all 10,000 test images) and DIR/model.json (settings,
training seconds, clean and PGD-20 accuracy on the first --check-n test images). Training: SGD
(lr 0.05, momentum 0.9, weight decay 5e-4, cosine to 0), each batch replaced by PGD adversarial
examples (uniform start, --pgd-steps signed steps of 2.5*eps/steps, BatchNorm in eval mode during
the attack). Deterministic from --seed for one device and torch version only up to cuDNN's
nondeterminism; the bench compares two attacks on whatever model this makes, so that is enough.
"""
import argparse
import ctypes
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "crosscheck"))
from common import data_dir, read_mnist, read_mnist_test  # noqa: E402
from pytorch_peer import build  # noqa: E402


def cifar_shaped(x):
    """[N, 1, 28, 28] -> [N, 3, 32, 32]: 2 pixels of zero padding each side, gray to RGB."""
    return F.pad(x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()


def pgd(model, x, y, eps, steps, alpha):
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (g,) = torch.autograd.grad(loss, [x_adv])
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv.detach()


def write_cifar_binary(path, x, y):
    """CIFAR-10's binary layout: per image a label byte, then the R, G and B planes (row-major)."""
    pixels = (x * 255.0).round().clamp(0, 255).to(torch.uint8).reshape(len(x), -1)
    records = torch.cat([y.to(torch.uint8).unsqueeze(1), pixels], 1).cpu().contiguous()
    with open(path + ".tmp", "wb") as f:
        f.write(ctypes.string_at(records.data_ptr(), records.numel()))  # no numpy needed
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for model.pt, test_batch.bin and model.json")
    p.add_argument("--data-dir", default=data_dir("mnist"), help="MNIST IDX folder [default: %(default)s]")
    p.add_argument("--train-n", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-n", type=int, default=1000, help="test images of the clean/PGD-20 check "
                                                             "[default: %(default)s]")
    a = p.parse_args()

    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    x, y = read_mnist(a.data_dir, "train", a.train_n)
    x, y = cifar_shaped(x).to(dev), y.to(dev)
    model = build("resnet18", 3, 10).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    n_batches = (a.train_n + a.batch_size - 1) // a.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs * n_batches)
    alpha = 2.5 * a.eps / a.pgd_steps
    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        perm = torch.randperm(a.train_n, device=dev)
        ok = 0
        for b in range(n_batches):
            idx = perm[b * a.batch_size:(b + 1) * a.batch_size]
            xb, yb = x[idx], y[idx]
            model.eval()
            xa = pgd(model, xb, yb, a.eps, a.pgd_steps, alpha)
            model.train()
            logits = model(xa)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ok += int((logits.argmax(1) == yb).sum())
        print(f"[cifar_shaped] epoch {epoch + 1}/{a.epochs}: adversarial train acc {100 * ok / a.train_n:.2f} %, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - t0
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)

    xt, yt = read_mnist_test(a.data_dir, 10000)
    xt = cifar_shaped(xt)
    write_cifar_binary(os.path.join(a.out, "test_batch.bin"), xt, yt)
    xs, ys = xt[:a.check_n].to(dev), yt[:a.check_n].to(dev)
    with torch.no_grad():
        clean = float((model(xs).argmax(1) == ys).float().mean())
    xadv = pgd(model, xs, ys, a.eps, 20, a.eps / 4)
    with torch.no_grad():
        robust = float((model(xadv).argmax(1) == ys).float().mean())
    print(f"[cifar_shaped] first {a.check_n} test images: clean {100 * clean:.2f} %, PGD-20 {100 * robust:.2f} %; "
          f"trained in {seconds:.0f} s", file=sys.stderr)
    traced = torch.jit.trace(model.cpu(), torch.zeros(1, 3, 32, 32))
    traced.save(os.path.join(a.out, "model.pt"))
    record = {"arch": "resnet18 (ci/bench/pytorch_peer.py)", "data": "MNIST padded to 32x32, gray to RGB",
              "train_n": a.train_n, "epochs": a.epochs, "pgd_steps": a.pgd_steps, "eps": a.eps,
              "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed, "device": str(dev),
              "torch": torch.__version__, "train_seconds": seconds,
              "check": {"test_images": a.check_n, "clean": clean, "pgd20": robust}}
    with open(os.path.join(a.out, "model.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(os.path.join(a.out, "model.pt"))


if __name__ == "__main__":
    main()
