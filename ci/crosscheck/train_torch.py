#!/usr/bin/env python3
"""Trains the cross-check's "PyTorch-trained model" in plain PyTorch (not by the harness): a
LeNet-style MNIST CNN (conv5x5(32) -> max-pool -> conv5x5(64) -> max-pool -> fc 1024->200 -> fc
200->10, ReLUs; a different architecture from the harness's SmallCNN on purpose) with PGD
adversarial training at eps 0.3 on the first few thousand MNIST training images, and saves it as
TorchScript (torch.jit.script) mapping [N, 1, 28, 28] float32 images in [0, 1] to 10 logits, the
input `infoat eval --torchscript` takes.

    train_torch.py [--data-dir DIR] [--train-n 6000] [--epochs 3] [--pgd-steps 7] [--eps 0.3]
                   [--seed 0] [--threads 2] [--cache-dir DIR] [--out MODEL.pt] [--force]

Deterministic from --seed (torch's generator seeds the initialisation, the shuffles and the PGD
starts) for a given torch version and thread count. The model is cached under
--cache-dir (default ~/.cache/infoat/crosscheck) in a file named by a hash of every setting
(architecture, data, schedule, seed, threads, torch version), with a .json record beside it; a
rerun with the same settings reuses it (--force retrains). Prints the model's path on stdout
(progress on stderr); --out also copies it there.

Training: Adam (lr 1e-3), batch 100; each batch is replaced by PGD adversarial examples (uniform
start in the eps-ball, --pgd-steps signed-gradient steps of 2.5*eps/steps on the cross-entropy,
projection onto the ball and [0, 1]); eps ramps linearly from 0 to --eps over the first epoch (as
the quickstart's AT run ramps it), which keeps a small model from collapsing to a constant.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cache_dir, data_dir, read_mnist, read_mnist_test  # noqa: E402

ARCH = "lenet5-32-64-200"
RECIPE_VERSION = 1  # bump when the training code changes what it produces


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 200)
        self.fc2 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def pgd(model, x, y, eps, steps):
    if eps <= 0:
        return x
    alpha = 2.5 * eps / steps
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (g,) = torch.autograd.grad(loss, [x_adv])
        x_adv = x_adv.detach() + alpha * g.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv.detach()


def main():
    data_default, cache = data_dir("mnist"), cache_dir()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=data_default, help="MNIST IDX folder [default: %(default)s]")
    p.add_argument("--train-n", type=int, default=6000, help="first N training images [default: %(default)s]")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads [default: %(default)s]")
    p.add_argument("--cache-dir", default=os.path.join(cache, "crosscheck"))
    p.add_argument("--out", help="also copy the TorchScript model here")
    p.add_argument("--force", action="store_true", help="retrain even when the cache has the model")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    settings = {"arch": ARCH, "recipe": RECIPE_VERSION, "dataset": "mnist", "train_n": a.train_n,
                "epochs": a.epochs, "pgd_steps": a.pgd_steps, "eps": a.eps, "batch_size": a.batch_size,
                "lr": a.lr, "optimizer": "adam", "eps_ramp_epochs": 1, "seed": a.seed,
                "threads": a.threads, "torch": torch.__version__}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    os.makedirs(a.cache_dir, exist_ok=True)
    path = os.path.join(a.cache_dir, f"torch-lenet-at-{key}.pt")
    record_path = path[:-3] + ".json"

    if os.path.isfile(path) and os.path.isfile(record_path) and not a.force:
        print(f"[train_torch] reusing {path}", file=sys.stderr)
    else:
        torch.manual_seed(a.seed)
        x, y = read_mnist(a.data_dir, "train", a.train_n)
        model = LeNet()
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
        n_batches = (a.train_n + a.batch_size - 1) // a.batch_size
        t0 = time.perf_counter()
        step = 0
        for epoch in range(a.epochs):
            perm = torch.randperm(a.train_n)
            tot_loss, tot_ok = 0.0, 0
            for b in range(n_batches):
                idx = perm[b * a.batch_size:(b + 1) * a.batch_size]
                xb, yb = x[idx], y[idx]
                eps = a.eps * min(1.0, (step + 1) / n_batches)   # ramp over the first epoch
                model.eval()
                xa = pgd(model, xb, yb, eps, a.pgd_steps)
                model.train()
                logits = model(xa)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                tot_loss += float(loss.detach()) * len(idx)
                tot_ok += int((logits.argmax(1) == yb).sum())
            print(f"[train_torch] epoch {epoch + 1}/{a.epochs}: adversarial loss {tot_loss / a.train_n:.4f}, "
                  f"adversarial train acc {100 * tot_ok / a.train_n:.2f} %, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
        seconds = time.perf_counter() - t0
        model.eval()
        # Quick sanity figures on the first 1,000 test images (clean and PGD-20 at eps).
        test_folder = a.data_dir
        xt, yt = read_mnist_test(test_folder, 500)
        with torch.no_grad():
            clean = float((model(xt).argmax(1) == yt).float().mean())
        torch.manual_seed(a.seed + 1)
        xadv = pgd(model, xt, yt, a.eps, 20)
        with torch.no_grad():
            robust = float((model(xadv).argmax(1) == yt).float().mean())
        print(f"[train_torch] first 500 test images: clean {100 * clean:.2f} %, PGD-20 (step 2.5*eps/20) "
              f"{100 * robust:.2f} %; trained in {seconds:.0f} s", file=sys.stderr)
        scripted = torch.jit.script(model)
        tmp = path + ".tmp"
        scripted.save(tmp)
        os.replace(tmp, path)
        with open(record_path, "w") as f:
            json.dump({"settings": settings, "key": key, "train_seconds": seconds,
                       "test500_clean_acc": clean, "test500_pgd20_acc": robust,
                       "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}, f, indent=2)
            f.write("\n")
        print(f"[train_torch] saved {path}", file=sys.stderr)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        shutil.copyfile(path, a.out)
        path = os.path.abspath(a.out)
    print(path)


if __name__ == "__main__":
    main()
