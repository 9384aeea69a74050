#!/usr/bin/env python3
"""Reads a model card written by `infoat export robustbench` as RobustBench 1.1.1 reads its own
(issue 23), with nothing from the harness:

- `robustbench.utils.ModelInfo(**card)`: the dataclass taken from the wheel's utils.py (by its
  syntax tree: utils.py itself imports timm, gdown, requests), so an unknown field is a TypeError;
- every field has the JSON type that field has in RobustBench's own cards (the shipped
  `fixtures/published/robustbench/<dataset>-Linf.json`), accuracies are percentages with two
  decimals, eps is "8/255";
- the card is sorted into the leaderboard as robustbench/leaderboard/template.py sorts
  (`ACC_FIELDS[Linf] = ("external", "autoattack_acc")`, the first field present, as a float,
  descending), and its rank printed.

  robustbench_card.py --robustbench DIR CARD.json
      prints {"fields", "rank", "of", "autoattack_acc", "model_info"}; exit 1 on any mismatch.
"""
import argparse
import ast
import dataclasses
import json
import os
import re
import sys
import typing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def model_info_class(rb_dir):
    path = os.path.join(rb_dir, "robustbench", "utils.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ModelInfo")
    module = ast.Module(body=[node], type_ignores=[])
    namespace = {"dataclasses": dataclasses, "Optional": typing.Optional}
    exec(compile(module, path, "exec"), namespace)
    return namespace["ModelInfo"]


def acc_fields(rb_dir):
    """ACC_FIELDS[ThreatModel.Linf] from utils.py, read from its syntax tree."""
    path = os.path.join(rb_dir, "robustbench", "utils.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "ACC_FIELDS" for t in n.targets):
            for k, v in zip(n.value.keys, n.value.values):
                if ast.unparse(k) == "ThreatModel.Linf":
                    return ast.literal_eval(v)
    raise SystemExit("ACC_FIELDS[ThreatModel.Linf] not found in robustbench/utils.py")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--robustbench", required=True)
    p.add_argument("card")
    a = p.parse_args()
    with open(a.card) as f:
        card = json.load(f)
    problems = []
    ModelInfo = model_info_class(a.robustbench)
    try:
        info = ModelInfo(**card)
    except TypeError as e:
        problems.append(f"ModelInfo(**card): {e}")
        info = None
    dataset = card.get("dataset")
    board_path = os.path.join(ROOT, "fixtures", "published", "robustbench", f"{dataset}-Linf.json")
    if not os.path.exists(board_path):
        problems.append(f"dataset {dataset!r}: no shipped leaderboard {board_path}")
        board = {"entries": []}
    else:
        with open(board_path) as f:
            board = json.load(f)
    types = {}
    for e in board["entries"]:
        for k, v in e["card"].items():
            if v is not None:
                types.setdefault(k, set()).add(type(v).__name__)
    for k, v in card.items():
        if k in types and type(v).__name__ not in types[k]:
            problems.append(f"{k} is a {type(v).__name__}; RobustBench's cards make it {sorted(types[k])}")
    for k in ("clean_acc", "reported", "autoattack_acc"):
        if not re.fullmatch(r"\d{1,3}\.\d\d", str(card.get(k, ""))):
            problems.append(f"{k} = {card.get(k)!r}: expected a percentage with two decimals")
    if card.get("eps") != "8/255":
        problems.append(f"eps = {card.get('eps')!r}: expected '8/255'")
    fields = acc_fields(a.robustbench)

    def get_key(x):
        for k in fields:
            if k in x:
                return float(x[k])

    models = [e["card"] for e in board["entries"]] + [card]
    models.sort(key=get_key, reverse=True)
    rank = 1 + sum(1 for m in models if m is not card and get_key(m) > get_key(card))
    print(json.dumps({"fields": sorted(card), "rank": rank, "of": len(models),
                      "autoattack_acc": card.get("autoattack_acc"),
                      "model_info": dataclasses.asdict(info) if info else None, "problems": problems}, indent=1))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
