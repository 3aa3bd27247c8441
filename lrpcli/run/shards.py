"""``--shard K/N``: which inputs one of N independent processes takes.

An input belongs to shard ``1 + H(rel) mod N``, where ``H`` is the first 8 bytes of the SHA-256
of its mirrored relative path (``ImageInput.rel``, POSIX form). The assignment depends on
nothing but that path, so the N shards of a run are disjoint and together cover every input
once, and adding or removing files moves no other file to another shard. ``--shard auto``
reads ``K/N`` from the environment of an array job (Slurm, Kubernetes indexed Jobs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lrpcli.io.inputs import ImageInput

__all__ = ["Shard", "ShardError", "parse_shard", "shard_of", "take_shard"]


class ShardError(ValueError):
    """``--shard`` cannot be understood (a usage error)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count}

    @classmethod
    def of_run(cls, run: Mapping[str, Any]) -> Shard | None:
        """The shard a report's ``run`` record was made for (``None``: all inputs)."""
        shard = run.get("shard")
        if isinstance(shard, dict) and isinstance(shard.get("index"), int) and isinstance(shard.get("count"), int):
            return cls(shard["index"], shard["count"])
        return None


def shard_of(rel: str, count: int) -> int:
    """The shard (1..``count``) of the input whose mirrored relative path is ``rel``."""
    digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def take_shard(inputs: Sequence[ImageInput], shard: Shard | None) -> list[int]:
    """Indexes (into ``inputs``, in order) of the inputs in ``shard``; all of them for ``None``."""
    if shard is None:
        return list(range(len(inputs)))
    return [i for i, item in enumerate(inputs) if shard_of(item.rel.as_posix(), shard.count) == shard.index]


_HELP = (
    "use --shard K/N with 1 <= K <= N (e.g. --shard 3/8), --shard auto in a Slurm array job, "
    "or --shard auto/N in a Kubernetes indexed Job with N completions"
)


def _int(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ShardError(f"--shard auto: {name}={text!r} is not a whole number") from None


def _check(index: int, count: int, where: str) -> Shard:
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {where}: shard {index} of {count} is out of range; {_HELP}")
    return Shard(index, count)


def parse_shard(text: str | None, env: Mapping[str, str]) -> Shard | None:
    """``K/N``, ``auto`` (Slurm) or ``auto/N`` (Kubernetes, or Slurm checked against N); ``None``
    when not given. Raises :class:`ShardError` saying how to fix the value or the environment.

    Slurm: ``K = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1`` (``MIN`` 0 when unset),
    ``N = SLURM_ARRAY_TASK_COUNT``. Kubernetes: ``K = JOB_COMPLETION_INDEX + 1``.
    """
    if text is None:
        return None
    value = text.strip().lower()
    head, _, tail = value.partition("/")
    given: int | None = None
    if tail:
        try:
            given = int(tail)
        except ValueError:
            raise ShardError(f"--shard {text!r}: {tail!r} is not a number; {_HELP}") from None
    if head != "auto":
        try:
            index = int(head)
        except ValueError:
            raise ShardError(f"--shard {text!r}: not K/N; {_HELP}") from None
        if given is None:
            raise ShardError(f"--shard {text!r}: the shard count is missing; {_HELP}")
        return _check(index, given, text)
    task = _int(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        count = _int(env, "SLURM_ARRAY_TASK_COUNT")
        if count is None:
            raise ShardError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; use --shard K/N")
        if given is not None and given != count:
            raise ShardError(
                f"--shard {text}: SLURM_ARRAY_TASK_COUNT is {count}, not {given}; "
                "drop /N or make the array as large as the shard count"
            )
        index = task - (_int(env, "SLURM_ARRAY_TASK_MIN") or 0) + 1
        if not 1 <= index <= count:
            raise ShardError(
                f"--shard auto: Slurm array task {task} is not one of {count} consecutive tasks "
                "(arrays with steps or gaps cannot be mapped to shards); "
                "use --array=0-(N-1) or --shard K/N"
            )
        return Shard(index, count)
    completion = _int(env, "JOB_COMPLETION_INDEX")
    if completion is not None:
        if given is None:
            raise ShardError(
                "--shard auto: JOB_COMPLETION_INDEX is set (Kubernetes) but the shard count is not; "
                "use --shard auto/N with N the Job's completions"
            )
        return _check(completion + 1, given, text)
    raise ShardError(
        f"--shard {text}: no array job found in the environment (neither SLURM_ARRAY_TASK_ID "
        f"nor JOB_COMPLETION_INDEX is set); {_HELP}"
    )
