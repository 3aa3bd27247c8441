"""Census of timm's classifiers: which trace and canonize, which are refused and by which operation.

Every builder in ``timm.list_models()`` is built with random weights on the meta device (no memory,
no weights, no network) and handed to :func:`lrpcli.prepare`, which traces, classifies and
canonizes it exactly as ``lrp explain`` would. Each model ends in one of:

``canonized``   the program was built (the model can be explained)
``refused``     :class:`lrpcli.UnsupportedOpError`, counted by the operation it names
``error``       any other exception while canonizing (a bug in lrpcli, listed by name)
``unbuilt``     timm could not build it on the meta device (not counted against lrpcli)

One JSON line per model goes to ``--out`` (appended; models already in the file are skipped, so
an interrupted census resumes), and the counts to standard output (and ``--summary`` as JSON)::

    HF_HUB_OFFLINE=1 python benchmarks/timm_census.py [--out census.jsonl] [--budget SECONDS]
        [--every K] [--filter GLOB] [--summary FILE]

``--every K`` takes every K-th name of the sorted list (a uniform subset), ``--budget`` stops
starting new models after that many seconds; the summary says how many were covered.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the models are built without weights

import torch  # noqa: E402

from lrpcli import UnsupportedOpError, prepare  # noqa: E402


def census_one(name: str) -> dict[str, Any]:
    """Build ``name`` on the meta device and canonize it; the outcome as one JSON-able record."""
    import timm

    start = time.perf_counter()
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False)
    except Exception as exc:  # noqa: BLE001 - a builder that fails here is reported, not fatal
        return {"model": name, "status": "unbuilt", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = prepare(model.eval())
    except UnsupportedOpError as exc:
        return {"model": name, "status": "refused", "op": _op_family(exc.op), "error": str(exc)[:400],
                "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - every failure is counted
        return {"model": name, "status": "error", "op": type(exc).__name__, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
    return {"model": name, "status": "canonized", "affine": len(program.affine_steps()),
            "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip


def _op_family(op: str) -> str:
    """The refused operation without node-specific detail (``a second input 'mask'`` → ``a second input``)."""
    return re.sub(r"\s*'[^']*'|\s*\([^)]*\)", "", op).strip()


def summarise(records: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """Counts by outcome and, for refusals and errors, by operation."""
    status = collections.Counter(r["status"] for r in records)
    refused = collections.Counter(r["op"] for r in records if r["status"] == "refused")
    errors = collections.Counter(r["op"] for r in records if r["status"] == "error")
    built = len(records) - status["unbuilt"]
    return {
        "timm": __import__("timm").__version__, "torch": torch.__version__, "builders": total,
        "covered": len(records), "built": built, "canonized": status["canonized"], "refused": status["refused"],
        "error": status["error"], "unbuilt": status["unbuilt"], "refused_by_op": dict(refused.most_common()),
        "errors_by_type": dict(errors.most_common()),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import timm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("timm_census.jsonl"))
    parser.add_argument("--summary", type=Path)
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds; no new model after that")
    parser.add_argument("--every", type=int, default=1, help="every K-th builder of the sorted list")
    parser.add_argument("--filter", default="*", help="a glob over builder names, e.g. 'vit_*'")
    args = parser.parse_args(argv)

    names = sorted(timm.list_models(args.filter))[:: args.every]
    done: dict[str, dict[str, Any]] = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["model"]] = record
    start = time.perf_counter()
    with args.out.open("a") as out:
        for i, name in enumerate(names):
            if name in done:
                continue
            if time.perf_counter() - start > args.budget:
                print(f"budget of {args.budget:.0f} s spent after {i} of {len(names)} builders", file=sys.stderr)
                break
            record = census_one(name)
            done[name] = record
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(f"{i + 1}/{len(names)} {name}: {record['status']} {record.get('op', '')}", file=sys.stderr, flush=True)
    summary = summarise([done[n] for n in names if n in done], len(names))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        args.summary.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
