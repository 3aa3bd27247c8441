"""Tests for lrpcli.core.program: step kinds, references and the program's own queries."""

from __future__ import annotations

import json

import torch
from torch import nn

from lrpcli.core.canonize import build_program
from lrpcli.core.program import Ref, StepKind, refs_in, resolve


def test_step_kinds_are_their_names_with_a_title_and_a_reason() -> None:
    for kind in StepKind:
        assert kind == kind.value and str(kind) == kind.value and json.dumps(kind) == f'"{kind.value}"'
        assert kind.title and kind.reason
    assert StepKind("affine") is StepKind.AFFINE
    assert StepKind.PASS.reason == "element-wise: relevance passes unchanged"


def test_refs_are_found_and_resolved_in_nested_arguments() -> None:
    args = (Ref(0), [1, Ref(2)], {"k": (Ref(1),)})
    assert [r.index for r in refs_in(args)] == [0, 2, 1]
    assert resolve(args, ["a", "b", "c"]) == ("a", [1, "c"], {"k": ("b",)})


def test_program_queries_and_analysis() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()
    program = build_program(model)
    kinds = [s.kind for s in program.steps]
    assert kinds == [StepKind.INPUT, StepKind.AFFINE, StepKind.PASS, StepKind.MOVE, StepKind.AFFINE, StepKind.OUTPUT]
    assert [s.index for s in program.affine_steps()] == [1, 4]
    a = program.analysis
    assert a is not None and a.live == [True] * 6
    assert a.users[1] == [(2, 0)] and a.last_use[1] == 2
    assert program.affine_steps()[1].affine.input_nonneg  # after a ReLU, through a reshape
    assert program.is_live_ref(Ref(2)) and not program.is_live_ref(3)
