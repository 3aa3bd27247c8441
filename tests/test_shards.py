"""Tests for lrpcli.run.shards: a stable, disjoint and covering assignment of inputs to shards,
and ``--shard`` from the command line or from an array job's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrpcli.io.inputs import ImageInput
from lrpcli.run.shards import Shard, ShardError, parse_shard, shard_of, take_shard


def inputs(names: list[str]) -> list[ImageInput]:
    return [ImageInput(Path("/data") / n, Path(n)) for n in names]


NAMES = [f"photos/{d}/img{i:03d}.jpg" for d in "abc" for i in range(40)]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_every_input(count: int) -> None:
    items = inputs(NAMES)
    taken = [take_shard(items, Shard(k, count)) for k in range(1, count + 1)]
    flat = [i for shard in taken for i in shard]
    assert sorted(flat) == list(range(len(items)))  # each input exactly once
    assert all(shard == sorted(shard) for shard in taken)  # input order kept
    if count > 1:
        assert all(taken)  # 120 inputs: no shard is empty


def test_assignment_depends_only_on_the_path() -> None:
    before = {n: shard_of(n, 5) for n in NAMES}
    grown = NAMES[::2] + [f"new/{i}.png" for i in range(30)]  # half removed, others added
    after = {n: shard_of(n, 5) for n in grown}
    assert all(after[n] == before[n] for n in NAMES[::2])
    items = inputs(grown)
    kept = [items[i].rel.as_posix() for i in take_shard(items, Shard(2, 5))]
    assert [n for n in NAMES[::2] if before[n] == 2] == [n for n in kept if n in before]


def test_no_shard_takes_everything() -> None:
    assert take_shard(inputs(NAMES[:3]), None) == [0, 1, 2]


def test_parse_k_of_n() -> None:
    assert parse_shard(None, {}) is None
    assert parse_shard("3/8", {}) == Shard(3, 8)
    assert str(parse_shard(" 1/1 ", {})) == "1/1"


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "2/x", "1/0"])
def test_bad_values_say_how_to_fix_them(text: str) -> None:
    with pytest.raises(ShardError, match="--shard K/N"):
        parse_shard(text, {})


def test_auto_from_slurm() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
    assert parse_shard("auto", env) == Shard(1, 4)
    assert parse_shard("auto", {**env, "SLURM_ARRAY_TASK_ID": "3"}) == Shard(4, 4)
    one_based = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert parse_shard("auto", one_based) == Shard(4, 4)
    assert parse_shard("auto/4", env) == Shard(1, 4)  # the count may be given too; it must agree


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no array job found"),
        ({"SLURM_ARRAY_TASK_ID": "2"}, "SLURM_ARRAY_TASK_COUNT is not"),
        ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"}, "not a whole number"),
        ({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "4"}, "steps or gaps"),
        ({"JOB_COMPLETION_INDEX": "1"}, "use --shard auto/N"),
    ],
)
def test_auto_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ShardError, match=message):
        parse_shard("auto", env)


def test_auto_slurm_count_must_match_a_given_count() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}
    with pytest.raises(ShardError, match="SLURM_ARRAY_TASK_COUNT is 4, not 5"):
        parse_shard("auto/5", env)


def test_auto_from_kubernetes() -> None:
    assert parse_shard("auto/10", {"JOB_COMPLETION_INDEX": "0"}) == Shard(1, 10)
    assert parse_shard("auto/10", {"JOB_COMPLETION_INDEX": "9"}) == Shard(10, 10)
    with pytest.raises(ShardError, match="out of range"):
        parse_shard("auto/10", {"JOB_COMPLETION_INDEX": "10"})
