#!/usr/bin/env python3
"""PyTorch's side of the RobustBench external-evaluation layout (issue 21), used by
tests/robustbench.rs: `torch.load` must read the adversarial images `infoat evidence export`
writes (with weights_only=True, as RobustBench loads untrusted files), and `infoat evidence
import` must read what `torch.save` writes.

  robustbench_layout.py check DIR       prints {"shape", "dtype", "min", "max", "n_examples"}
  robustbench_layout.py rewrite SRC DST  re-saves SRC's images with torch.save into DST, moving
                                         example 0 outside the eps-ball (it must be refused),
                                         and copies evaluation.json and model.safetensors
"""
import json
import os
import shutil
import sys

import torch


def check(folder):
    images = torch.load(os.path.join(folder, "adversarial.pt"), weights_only=True)
    with open(os.path.join(folder, "evaluation.json")) as f:
        meta = json.load(f)
    print(json.dumps({"shape": list(images.shape), "dtype": str(images.dtype), "min": images.min().item(),
                      "max": images.max().item(), "n_examples": meta["n_examples"]}))


def rewrite(src, dst):
    os.makedirs(dst, exist_ok=True)
    images = torch.load(os.path.join(src, "adversarial.pt"), weights_only=True).clone()
    with open(os.path.join(src, "evaluation.json")) as f:
        meta = json.load(f)
    # Example 0 moved by 2 eps (then clipped to [0, 1]): outside the threat model.
    images[0] = (images[0] + 2 * meta["eps"]).clamp(0, 1)
    torch.save(images, os.path.join(dst, "adversarial.pt"))
    meta["attack"] = "re-saved by PyTorch, example 0 moved outside the ball"
    meta["source"] = "ci/crosscheck/robustbench_layout.py"
    with open(os.path.join(dst, "evaluation.json"), "w") as f:
        json.dump(meta, f)
    shutil.copy(os.path.join(src, "model.safetensors"), os.path.join(dst, "model.safetensors"))
    print(json.dumps({"written": dst}))


if __name__ == "__main__":
    {"check": check, "rewrite": rewrite}[sys.argv[1]](*sys.argv[2:])
