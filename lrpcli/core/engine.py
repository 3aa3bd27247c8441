"""The LRP engine: one forward pass over the canonized graph, then one reverse walk.

The forward pass (no autograd) keeps only what each step's rule needs (an affine layer's input
and output, a sum's operands). The reverse walk applies each step's rule once and records the
conservation ledger. Programs (traced, canonized graphs with folded weights and cached W⁺) are
prepared once per model (:mod:`lrpcli.core.canonize`) and reused while the model's parameters
are unchanged; z^B bounds come from :mod:`lrpcli.core.bounds`.

Long because the forward pass, the reverse walk and the relevance step of each step kind read
one shared plan (which outputs are kept, which ReLUs run in place): split apart, each piece
would have to be handed that plan.
"""

from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence, Union

import torch
from torch import Tensor

from . import linearize
from .canonize import fingerprint, prepare
from .composites import Assignment, Composite, LayerInfo, get_composite
from .layers import Affine
from .ledger import Ledger, LedgerEntry
from .ops import RELU_OPS, SPREADING_MOVES, ZERO_BELOW_OPS, ZERO_KEEPING_PASSES
from .bounds import BoxBounds
from .program import Analysis, Ref, Step, StepKind, UnsupportedOpError, resolve
from .rules import Epsilon, ZBox, psum, share

ClassChoice = Union[int, Sequence[int], Sequence[Sequence[int]], Tensor, Callable[[Tensor], Tensor], None]
"""A class per image (or K per image): an index, indices, or a function of the logits ``(N, C)``."""

__all__ = ["ClassChoice", "Explanation", "Explainer", "explain", "prepare", "top_classes"]


@dataclass(frozen=True)
class Redo:
    """An image recomputed wholly in a float64 copy of the model because float32 rounding kept
    its ledger from closing; ``float32_error`` is the closure error (relative to f(x)) before."""

    float32_error: float
    reason: str = "ledger did not close in float32"

    def to_dict(self) -> dict[str, Any]:
        """The report's ``precision`` field of an image (:class:`lrpcli.run.entries.Result`)."""
        return {"float64": "image", "float32_error": self.float32_error, "reason": self.reason}


@dataclass
class Explanation:
    """Result of :func:`explain` for a batch."""

    relevance: Tensor  # like the inputs
    logits: Tensor  # (N, classes)
    targets: Tensor  # (N,) explained class per image
    ledger: Ledger  # ledger.precision says, per image, in which precision it was computed
    #: per image, how it was recomputed in float64 (None: not at all); see :class:`Redo`
    redone: list[Redo | None] = field(default_factory=list)
    #: (N,) the class subtracted per image (``contrast=``): the map explains f_target − f_contrast
    contrasts: Tensor | None = None
    #: the relevance arriving at each requested inner module's output (``layers=``), by name
    layers: dict[str, Tensor] = field(default_factory=dict)

    @property
    def float64_rows(self) -> list[int]:
        """The images (rows) recomputed in float64."""
        return [i for i, r in enumerate(self.redone) if r is not None]


class Explainer:
    """A model prepared for one composite: call it on batches."""

    def __init__(
        self,
        model: torch.nn.Module,
        composite: "str | Mapping[str, Any] | Composite" = "epsilon_plus_flat",
        *,
        ignore_bias: bool = False,
        precision: str = "auto",
        tolerance: float = 1e-5,
        **options: Any,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model = model
        self.precision = precision
        self.tolerance = tolerance
        self._float64: Explainer | None = None
        if precision == "float64" and _model_dtype(model) != torch.float64:
            self._float64 = Explainer(
                _float64_copy(model), composite, ignore_bias=ignore_bias, precision="model", **options
            )
        self.program = prepare(model)
        self.composite = get_composite(composite, **options)
        self.ignore_bias = ignore_bias
        affine = [s for s in self.program.affine_steps() if s.affine.kind != "scale"]  # type: ignore[union-attr]
        infos = [
            LayerInfo(k, s.module or s.name, s.affine.kind, s.affine_type, k == len(affine) - 1)  # type: ignore[union-attr]
            for k, s in enumerate(affine)
        ]
        self.assignments: dict[int, Assignment] = {
            s.index: a for s, a in zip(affine, self.composite.assign(infos))
        }
        for s in self.program.affine_steps():
            if s.affine.kind == "scale":  # type: ignore[union-attr]
                self.assignments[s.index] = Assignment(
                    Epsilon(self.composite.norm_stabilizer), "BatchNorm that cannot be folded: ε-rule on its affine map"
                )
        self.analysis: Analysis = self.program.analysis  # type: ignore[assignment]
        self._plan_outputs()
        self._box = BoxBounds(self.program)
        self._layouts: dict[tuple[Any, ...], dict[int, tuple[int, int]]] = {}

    def _plan_outputs(self) -> None:
        """Which affine outputs ``z`` the forward pass keeps, to save memory and passes.

        Where ``z`` feeds only a ReLU whose output gets zero relevance wherever it is zero, the
        relevance is zero wherever ``z ≤ 0`` (the step is "positive"): the ReLU runs in place and
        the rule gets ``relu(z)`` (``s = 0`` at the clipped positions either way), and γ needs no
        ``z`` at all there (nor before a ReLU6). Rules that never read ``z`` (z⁺, flat, w², αβ on a
        signed input) get none; when ``z`` is not kept, its only-user ReLU runs in place too.
        """
        steps = self.program.steps
        users = self.analysis.users  # step → (user, arg position)
        memo: dict[int, bool] = {}

        def zero_safe(i: int) -> bool:
            """Relevance arriving at step ``i``'s output is zero wherever that output is zero."""
            if i not in memo:
                memo[i] = bool(users[i]) and all(user_ok(u, j) for u, j in users[i])
            return memo[i]

        def user_ok(u: int, j: int) -> bool:
            step = steps[u]
            if step.kind is StepKind.AFFINE:
                return self.assignments[u].rule.zero_at_zero_input
            if step.kind in _NO_RELEVANCE_BACK or (step.kind is StepKind.GATE and j == step.gate_arg):
                return True  # R = x · (...), or no relevance at all
            if step.kind in (StepKind.GATE, StepKind.SELECT) or (step.kind is StepKind.MOVE and step.op not in SPREADING_MOVES):
                return zero_safe(u)
            return step.kind is StepKind.PASS and step.op in ZERO_KEEPING_PASSES and zero_safe(u)

        self._no_output: set[int] = set()
        self._relu_inplace: set[int] = set()
        self._positive: set[int] = set()  # relevance arrives only where z > 0
        for s in steps:
            if s.kind is not StepKind.AFFINE:
                continue
            relu = None  # the only user of z, if it zeroes exactly the z <= 0 (ReLU, ReLU6)
            if len(users[s.index]) == 1:
                u, _ = users[s.index][0]
                relu = u if steps[u].kind is StepKind.PASS and steps[u].op in ZERO_BELOW_OPS else None
            rule = self.assignments[s.index].rule
            positive = relu is not None and zero_safe(relu) and not rule.needs_true_output()
            if positive:
                self._positive.add(s.index)
            if not rule.uses_output(s.affine, positive):  # type: ignore[arg-type]
                self._no_output.add(s.index)
            if relu is not None and steps[relu].op in RELU_OPS and (positive or s.index in self._no_output):
                self._relu_inplace.add(relu)  # z is read by nobody else, or only where it is > 0

    # -- public -------------------------------------------------------------------------------
    def __call__(
        self,
        inputs: Tensor,
        target: ClassChoice = None,
        *,
        contrast: ClassChoice = None,
        layers: Sequence[str] = (),
    ) -> Explanation:
        """Explain ``inputs`` (a batch) for ``target`` (None: the predicted class).

        ``contrast``: explain ``f_target − f_contrast`` instead ("why target rather than
        contrast"): the reverse walk starts from ``+f_target`` at the target and ``−f_contrast``
        at the contrast class, so wherever the rules are linear in R (all of lrpcli's) the map is
        the target's map minus the contrast's. ``layers``: module names whose output relevance to
        keep (:attr:`Explanation.layers`). A class choice is an index, one per image, or a
        function of the model's logits ``(N, classes)`` giving ``(N,)`` indices.
        """
        return self.each(inputs, target, contrast=contrast, layers=layers)[0]

    def each(
        self,
        inputs: Tensor,
        targets: ClassChoice = None,
        *,
        contrast: ClassChoice = None,
        layers: Sequence[str] = (),
    ) -> list[Explanation]:
        """Several explanations of ``inputs`` from one forward pass: one per column of
        ``targets`` (shape ``(N, K)``, or a function of the logits giving it, e.g.
        :func:`top_classes`); ``contrast`` alike (one column, or K). A 1-d or scalar choice
        gives one explanation. Each equals :meth:`__call__` with that column."""
        if not isinstance(inputs, Tensor) or inputs.ndim < 2:
            raise ValueError("inputs must be a batched tensor, e.g. shape (N, 3, H, W)")
        ref = next(iter(self.model.parameters()), None)
        if ref is not None and ref.device != inputs.device:
            raise ValueError(
                f"inputs are on {inputs.device} but the model is on {ref.device}; move one of them first"
            )
        layer_steps = {name: self.layer_step(name) for name in layers}
        if self.precision == "float64" and self._float64 is not None:
            exps = self._float64.each(inputs.to(torch.float64), targets, contrast=contrast, layers=layers)
            for exp in exps:
                exp.relevance = exp.relevance.to(inputs.dtype)
            return exps
        with torch.no_grad():
            x = inputs.detach()
            logits, saved = self._forward(x, self.ignore_bias)
            logits = logits.clone()  # it may share storage with the last layer's z, which the rules reuse
            if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"the model must return logits of shape (N, classes), got {tuple(logits.shape)}")
            # with ignore_bias the explained function is the bias-free network, but the outputs reported
            # and the predicted class are the model's own (one more forward pass, nothing kept)
            outputs = self._forward(x, False, keep=False)[0] if self.ignore_bias else logits
            columns = _class_columns(targets, outputs, "target")
            against = None if contrast is None else _class_columns(contrast, outputs, "contrast")
            if against is not None and against.shape[1] not in (1, columns.shape[1]):
                raise ValueError(f"contrast needs 1 or {columns.shape[1]} columns, got {against.shape[1]}")
            exps = []
            for k in range(columns.shape[1]):
                c = None if against is None else against[:, min(k, against.shape[1] - 1)]
                last = k == columns.shape[1] - 1  # the last walk may consume what the forward pass kept
                exp = self._backward(x, logits, columns[:, k], saved, contrast=c, layers=layer_steps, consume=last)
                exp.logits = outputs
                exps.append(exp)
        if self.precision == "auto" and x.dtype != torch.float64:
            for exp in exps:
                err = exp.ledger.relative_error()
                bad = (err > self.tolerance).nonzero().flatten()
                if bad.numel():
                    self._recompute_in_float64(exp, x, bad, err[bad].tolist(), layers)
        return exps

    def layer_step(self, name: str, inputs: Tensor | None = None) -> int:
        """The step whose output is module ``name``'s output (the last step inside the module
        that is used outside it); :class:`ValueError` says which names exist. With ``inputs``
        (a batch of the shape to be explained) it also checks, by running the model on them,
        that the output holds one image per row, as ``layers=`` needs."""
        steps = self.program.steps
        inside = [
            s for s in steps
            if s.kind not in _NOT_EXPLAINED and s.module is not None
            and (s.module == name or s.module.startswith(name + "."))
        ]  # fmt: skip
        if not inside:
            known = sorted({m for s in steps if s.module for m in _scopes(s.module)})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"no module {name!r} in the canonized model{hint} (lrp inspect lists the modules; "
                "a BatchNorm folded into its conv is not a layer of its own)"
            )
        members = {s.index for s in inside}
        users = self.analysis.users
        carries = [s.kind not in (StepKind.DEAD, StepKind.CONST) for s in steps]  # not shape arithmetic
        exits = [s for s in inside if any(u not in members and carries[u] for u, _ in users[s.index])]
        if len(exits) != 1:
            raise ValueError(
                f"module {name!r} has {len(exits)} outputs used outside it "
                f"({', '.join(s.name for s in exits) or 'none'}); name a module with one output"
            )
        step = exits[0]
        if inputs is not None and step.index in self._batch_layout(inputs):
            raise ValueError(
                f"module {name!r}'s output ({step.name}) does not hold one image per row (attention "
                "internals put heads or windows in the batch dimension); name an enclosing module"
            )
        return step.index

    def _recompute_in_float64(
        self, exp: Explanation, x: Tensor, rows: Tensor, errors: list[float], layers: Sequence[str] = ()
    ) -> None:
        """Redo images whose ledger does not close in float32 in float64, and splice them in."""
        if self._float64 is None:
            self._float64 = Explainer(
                _float64_copy(self.model), self.composite, ignore_bias=self.ignore_bias, precision="model"
            )
        contrast = None if exp.contrasts is None else exp.contrasts[rows]
        hi = self._float64(x[rows].to(torch.float64), exp.targets[rows], contrast=contrast, layers=layers)
        exp.relevance[rows] = hi.relevance.to(exp.relevance.dtype)
        for name, rel in hi.layers.items():
            exp.layers[name][rows] = rel.to(exp.layers[name].dtype)
        exp.ledger.splice(rows, hi.ledger)
        for i, e in zip(rows.tolist(), errors):
            exp.redone[i] = Redo(e)

    def rule_table(self) -> list[dict[str, Any]]:
        """Every step with its rule and why: what `lrp inspect` prints."""
        rows = []
        for s in self.program.steps:
            if s.kind in (StepKind.DEAD, StepKind.CONST, StepKind.OUTPUT):
                continue
            a = self.assignments.get(s.index)
            rule, why = (a.rule.describe(), a.reason) if a else self._fixed_rule(s)
            rows.append(
                {
                    "step": s.name,
                    "kind": s.kind.value,
                    "op": s.op,
                    "module": s.module,
                    "rule": rule,
                    "why": why,
                    "layer": s.affine.describe() if s.affine is not None else "",
                    "canonization": "; ".join(s.notes),
                }
            )
        return rows

    def _fixed_rule(self, s: Step) -> tuple[str, str]:
        """Rule and reason of a step whose rule the composite does not choose."""
        eps = self.composite.norm_stabilizer
        if s.kind is StepKind.FROZEN:
            lin: linearize.Linearized = s.frozen  # type: ignore[assignment]
            return f"{lin.describe()}, epsilon={eps}", f"{lin.frozen} held constant; ε-rule on the affine rest"
        if s.kind is StepKind.NORM:
            return f"norm(stabilizer={eps})", s.kind.reason
        if s.kind is StepKind.MIX:
            return f"mix(softmax weights constant), epsilon={eps}", s.kind.reason
        if s.kind is StepKind.STAT:
            return "none", s.kind.reason
        if s.rule_name == "winner_takes_all":
            return s.rule_name, "max pooling: to the input that won"
        return s.rule_name or s.kind.value, s.kind.reason

    # -- forward ------------------------------------------------------------------------------
    def _forward(
        self, x: Tensor, bias_free: bool, keep: bool = True, shapes: list[Any] | None = None
    ) -> tuple[Tensor, list[Any]]:
        """Run the program; with ``keep`` save what each step's rule needs; ``bias_free`` zeroes
        biases; ``shapes`` (a list as long as the program) receives every step's output shape."""
        steps, a = self.program.steps, self.analysis
        env: list[Any] = [None] * len(steps)
        saved: list[Any] = [None] * len(steps)
        for s in steps:
            kind = s.kind
            if kind is StepKind.DEAD:
                continue
            if kind is StepKind.INPUT:
                env[s.index] = x
                continue
            args = resolve(s.args, env)
            kwargs = resolve(s.kwargs, env) if s.kwargs else {}
            if kind is StepKind.AFFINE:
                bias = None if bias_free else s.affine.bias  # type: ignore[union-attr]
                out = s.affine.forward(args[0], None, bias)  # type: ignore[union-attr]
                if keep:  # z, or relu(z) once its ReLU has run in place (see _plan_outputs)
                    saved[s.index] = (args[0], None if s.index in self._no_output else out)
            elif kind is StepKind.FROZEN:
                lin: linearize.Linearized = s.frozen  # type: ignore[assignment]
                y, state = lin.run(args, bias_free)
                out = lin.result(y, state)
                if keep:
                    saved[s.index] = (args[lin.signal], y, state)
            elif keep and s.index in a.pools:  # max pooling: keep the winners' indices, not the input
                out, winners = a.pools[s.index](args, kwargs)
                saved[s.index] = _Winners(winners, args[0].shape)
            else:
                if kind is StepKind.NORM and bias_free and s.index in a.const_operands:
                    args = list(args)
                    for j in a.const_operands[s.index]:
                        args[j] = 0
                    args = tuple(args)
                if kind is StepKind.MOVE and bias_free and s.index in a.move_consts:
                    args = _zero_constants(s.args, args, a.live)
                out = torch.relu_(args[0]) if s.index in self._relu_inplace else s.fn(*args, **kwargs)
                if keep and kind is StepKind.MOVE:
                    saved[s.index] = (args, kwargs)
                elif keep and kind in (StepKind.PASS, StepKind.GATE):
                    saved[s.index] = [a.shape if isinstance(a, Tensor) else None for a in args]
                elif keep and kind in (StepKind.NORM, StepKind.MIX):
                    saved[s.index] = (args, kwargs, out)
            env[s.index] = out
            if shapes is not None:
                shapes[s.index] = tuple(out.shape) if isinstance(out, Tensor) else None
            for r in s.refs():
                if a.last_use[r.index] == s.index:
                    env[r.index] = None
        return env[self.program.output_index], saved

    # -- backward -----------------------------------------------------------------------------
    def _backward(
        self,
        x: Tensor,
        logits: Tensor,
        targets: Tensor,
        saved: list[Any],
        *,
        contrast: Tensor | None = None,
        layers: Mapping[str, int] | None = None,
        consume: bool = True,
    ) -> Explanation:
        """The reverse walk from ``f_target`` (minus ``f_contrast``); ``layers`` (name → step)
        keeps the relevance arriving there; without ``consume`` it leaves ``saved`` intact."""
        steps = self.program.steps
        n = x.shape[0]
        layout = self._batch_layout(x)
        start = torch.zeros_like(logits)
        rows = torch.arange(n, device=logits.device)
        start[rows, targets] = logits[rows, targets]
        output = logits[rows, targets].to(torch.float64)
        if contrast is not None:  # a row whose contrast is its target starts from zero
            start.index_put_((rows, contrast), -logits[rows, contrast], accumulate=True)
            output = output - logits[rows, contrast].to(torch.float64)
        keep = {i: name for name, i in (layers or {}).items()}
        kept: dict[str, Tensor] = {}
        rel: list[Any] = [None] * len(steps)
        rsum: list[Any] = [None] * len(steps)  # Σ relevance arriving at each step, per image
        out_ref = steps[self.program.output_index].args[0]
        rel[out_ref.index] = start
        rsum[out_ref.index] = output.clone()
        entries: list[LedgerEntry] = []
        zeros = torch.zeros(n, dtype=torch.float64, device=x.device)
        for s in reversed(steps):
            r = rel[s.index]
            if r is None or s.kind in _NOT_EXPLAINED:
                continue
            if s.kind is StepKind.STAT and s.error is not None:
                raise s.error
            rel[s.index] = None
            if s.index in keep:
                kept[keep[s.index]] = _layer_relevance(s, r, n, layout)
            data = saved[s.index]
            if consume:
                saved[s.index] = None
            r_out = rsum[s.index]
            bias = stab = dropped = zeros
            distributed = None
            rule = s.rule_name
            if s.kind is StepKind.AFFINE:
                contribs, absorbed, rule = self._affine(s, data, r, x, reuse=consume)
                bias, stab, dropped, distributed = (_per_image(s, v, n, layout) for v in absorbed)
            elif s.kind in (StepKind.NORM, StepKind.MIX):
                contribs, absorbed = self._norm(s, data, r)
                bias, stab, dropped = (_per_image(s, v, n, layout) for v in absorbed)
                rule = self._fixed_rule(s)[0]
            elif s.kind is StepKind.MOVE:
                contribs, bias = self._move(s, data, r, n)
            elif s.kind is StepKind.FROZEN:
                contribs, absorbed = self._frozen(s, data, r)
                bias, stab, dropped = (_per_image(s, v, n, layout) for v in absorbed)
                rule = f"{s.frozen.describe()}, epsilon={self.composite.norm_stabilizer}"  # type: ignore[union-attr]
            elif s.kind is StepKind.SELECT:
                src, k = s.args[0], s.args[1]
                bucket = rel[src.index] if isinstance(rel[src.index], dict) else {}
                bucket[k] = bucket[k] + r if k in bucket else r
                rel[src.index] = bucket
                rsum[src.index] = r_out if rsum[src.index] is None else rsum[src.index] + r_out
                entries.append(LedgerEntry(s.name, s.op, s.module, rule, r_out, r_out, bias, stab, dropped))
                continue
            else:  # pass or gate: all relevance to the one signal operand
                pos = [j for j, a in enumerate(s.args) if j != s.gate_arg and self.program.is_live_ref(a)]
                if len(pos) != 1:
                    raise UnsupportedOpError(s.op, s.name, s.module, "element-wise op with several signal inputs")
                shape = data[pos[0]]
                contribs = [(s.args[pos[0]].index, r if r.shape == shape else r.sum_to_size(shape))]
            r_in = zeros
            for idx, c, *known in contribs:
                if c is None:
                    continue
                # relevance passed on unchanged keeps its sum
                part = known[0] if known else r_out if c is r else _image_sums(idx, c, n, layout)
                r_in = r_in + part
                rel[idx] = c if rel[idx] is None else rel[idx] + c
                rsum[idx] = part if rsum[idx] is None else rsum[idx] + part
            entries.append(LedgerEntry(s.name, s.op, s.module, rule, r_out, r_in, bias, stab, dropped, distributed))
        pixels = rel[self.program.input_index]
        if pixels is None:
            pixels = torch.zeros_like(x)
        entries.reverse()
        precision = [str(x.dtype)[6:]] * n
        ledger = Ledger(output=output, pixels=psum(pixels), entries=entries, precision=precision)
        return Explanation(
            relevance=pixels, logits=logits, targets=targets, ledger=ledger, redone=[None] * n,
            contrasts=contrast, layers={name: kept[name] for name in (layers or {}) if name in kept},
        )  # fmt: skip

    def _batch_layout(self, x: Tensor) -> dict[int, tuple[int, int]]:
        """The steps whose output does not hold one image per row, as ``step → (batch dimension,
        rows per image)``: timm's attention permutes ``(q, k, v)`` in front of the batch, window
        attention merges windows into it. Found once per input shape by running the program on
        one and on two copies of the first image and seeing which dimension grows."""
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if key not in self._layouts:
            one, two = [None] * len(self.program.steps), [None] * len(self.program.steps)
            with torch.no_grad():
                self._forward(x[:1], False, keep=False, shapes=one)
                self._forward(x[:1].expand(2, *x.shape[1:]).contiguous(), False, keep=False, shapes=two)
            found: dict[int, tuple[int, int]] = {}
            for i, (a, b) in enumerate(zip(one, two)):
                if a is None or b is None or len(a) != len(b):
                    continue
                grown = [d for d in range(len(a)) if a[d] != b[d]]
                if len(grown) == 1 and b[grown[0]] == 2 * a[grown[0]] and (grown[0], a[grown[0]]) != (0, 1):
                    found[i] = (grown[0], a[grown[0]])
            self._layouts[key] = found
        return self._layouts[key]

    def _affine(self, s: Step, data: Any, r: Tensor, x0: Tensor, reuse: bool = True) -> tuple[list[Any], Any, str]:
        xin, z = data
        layer: Affine = s.affine  # type: ignore[assignment]
        assignment = self.assignments[s.index]
        bias = None if self.ignore_bias else layer.bias
        bounds = None
        if isinstance(assignment.rule, ZBox):
            bounds = self._box.at(s, assignment.rule, x0)
        positive = s.index in self._positive
        # walking backwards, every user of z has been explained: it is dead after this rule,
        # unless another walk from the same forward pass comes after this one
        r_in, absorbed = assignment.rule.apply(layer, xin, z, r, bias, bounds, positive, reuse=reuse)
        return [(s.args[0].index, r_in)], absorbed, assignment.rule.describe()

    def _norm(self, s: Step, data: Any, r: Tensor) -> tuple[list[Any], Any]:
        args, kwargs, y = data
        eps = self.composite.norm_stabilizer
        sig, stab, dropped = share(r, y, eps)
        if s.index in self.analysis.plain_adds and args[0].shape == args[1].shape == y.shape:
            contribs = [(s.args[0].index, args[0] * sig), (s.args[1].index, args[1] * sig)]
        else:
            leaves: list[tuple[int, Tensor]] = []
            live = self.analysis.live
            if s.kind is StepKind.MIX:  # the attention weights are held constant
                live = list(live)
                live[s.args[s.gate_arg].index] = False
            with torch.enable_grad():
                a = _substitute(s.args, args, live, leaves)
                k = _substitute(s.kwargs, kwargs, self.analysis.live, leaves) if kwargs else {}
                out = s.fn(*a, **k)
                grads = torch.autograd.grad(out, [leaf for _, leaf in leaves], sig, allow_unused=True)
            contribs = [(idx, None if g is None else leaf.detach() * g) for (idx, leaf), g in zip(leaves, grads)]
        bias = torch.zeros_like(stab)
        consts = self.analysis.const_operands.get(s.index)
        if consts and not self.ignore_bias:
            zeroed = list(args)
            for j in consts:
                zeroed[j] = 0
            bias = psum(sig * (y - s.fn(*zeroed, **kwargs)))
        return contribs, (bias, stab, dropped)

    def _move(self, s: Step, data: Any, r: Any, n: int) -> tuple[list[Any], Tensor]:
        """Relevance moved back through data movement (``n`` images); a constant moved in (a class
        token) acts as a bias."""
        if isinstance(data, _Winners):  # winner takes all, through the indices kept by the forward pass
            flat = r.new_zeros(data.shape).flatten(2)
            flat.scatter_add_(2, data.indices.flatten(2), r.flatten(2))
            return [(s.args[0].index, flat.view(data.shape))], torch.zeros(n, dtype=torch.float64, device=r.device)
        args, kwargs = data
        leaves: list[tuple[int, Tensor]] = []
        consts: list[tuple[int, Tensor]] = []
        with torch.enable_grad():
            a = _substitute(s.args, args, self.analysis.live, leaves, consts)
            k = _substitute(s.kwargs, kwargs, self.analysis.live, leaves, consts) if kwargs else {}
            out = s.fn(*a, **k)
            if isinstance(r, dict):
                outs = [out[i] for i in r]
                grad_out = [r[i] for i in r]
            else:
                outs, grad_out = [out], [r]
            grads = torch.autograd.grad(outs, [t for _, t in leaves + consts], grad_out, allow_unused=True)
        bias = torch.zeros(n, dtype=torch.float64, device=grad_out[0].device)
        for g in grads[len(leaves) :]:
            if g is not None:
                bias = bias + (psum(g) if g.ndim and g.shape[0] == bias.shape[0] else g.sum().double())
        return [(idx, g) for (idx, _), g in zip(leaves, grads)], bias

    def _frozen(self, s: Step, data: Any, r: Any) -> tuple[list[Any], Any]:
        """ε-rule on the affine map a LayerNorm / GroupNorm / attention is with its σ or weights frozen."""
        xin, y, state = data
        lin: linearize.Linearized = s.frozen  # type: ignore[assignment]
        if isinstance(r, dict):  # (output, weights) pair: only the output carries relevance here
            r = r[0]
        sig, stab, dropped = share(r, y, self.composite.norm_stabilizer)
        with torch.enable_grad():
            leaf = xin.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(lin.apply(leaf, state, self.ignore_bias), leaf, sig)
        bias = psum(sig * lin.apply(torch.zeros_like(xin), state, self.ignore_bias))
        return [(s.args[lin.signal].index, xin * grad)], (bias, stab, dropped)



def _image_sums(index: int, t: Tensor, n: int, layout: dict[int, tuple[int, int]]) -> Tensor:
    """Per-image sums of ``t``, shaped like step ``index``'s output (see ``Explainer._batch_layout``)."""
    if index not in layout:
        return psum(t)
    return t.movedim(layout[index][0], 0).reshape(n, -1).sum(1).double()


def _per_image(s: Step, rows: Tensor | None, n: int, layout: dict[int, tuple[int, int]]) -> Tensor | None:
    """What a rule absorbed, summed per row of step ``s``'s output, as per-image sums."""
    if rows is None or s.index not in layout:
        return rows
    dim, per_image = layout[s.index]
    if dim != 0:
        raise UnsupportedOpError(
            s.op, s.name, s.module, f"its output has the batch in dimension {dim}, not 0; "
            "rules need one image (or a whole number of rows per image) in the first dimension",
        )  # fmt: skip
    return rows.reshape(n, per_image).sum(1)


#: kinds whose operands receive relevance as ``x · (...)`` or not at all (zero stays zero)
_NO_RELEVANCE_BACK = frozenset({StepKind.NORM, StepKind.FROZEN, StepKind.MIX, StepKind.STAT})
#: kinds the backward walk does not explain
_NOT_EXPLAINED = frozenset({StepKind.INPUT, StepKind.OUTPUT, StepKind.DEAD, StepKind.CONST})


class _Winners(NamedTuple):
    """What a max pooling step keeps for the backward pass: the argmax indices and the input shape."""

    indices: Tensor
    shape: torch.Size


PRECISIONS = ("auto", "model", "float64")
_FLOAT64: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[Any, ...], torch.nn.Module]]" = (
    weakref.WeakKeyDictionary()
)


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    p = next(iter(model.parameters()), None)
    return torch.float32 if p is None else p.dtype


def _float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``model`` (cached while the model is unchanged)."""
    import copy

    fp = fingerprint(model)
    hit = _FLOAT64.get(model)
    if hit is not None and hit[0] == fp:
        return hit[1]
    twin = copy.deepcopy(model).to(torch.float64)
    _FLOAT64[model] = (fp, twin)
    return twin


def _substitute(
    template: Any,
    values: Any,
    live: list[bool],
    leaves: list[tuple[int, Tensor]],
    consts: list[tuple[int, Tensor]] | None = None,
) -> Any:
    """Copy ``values`` with live tensors replaced by fresh autograd leaves (recorded in ``leaves``);
    with ``consts``, constant floating-point tensors become leaves too (recorded there)."""
    if isinstance(template, Ref):
        if live[template.index] and isinstance(values, Tensor):
            leaf = values.detach().requires_grad_(True)
            leaves.append((template.index, leaf))
            return leaf
        if consts is not None and isinstance(values, Tensor) and values.is_floating_point():
            leaf = values.detach().requires_grad_(True)
            consts.append((template.index, leaf))
            return leaf
        return values
    if isinstance(template, (tuple, list)):
        seq = [_substitute(t, v, live, leaves, consts) for t, v in zip(template, values)]
        return tuple(seq) if isinstance(template, tuple) else seq
    if isinstance(template, dict):
        return {k: _substitute(template[k], values[k], live, leaves, consts) for k in template}
    return values


def _zero_constants(template: Any, values: Any, live: list[bool]) -> Any:
    """Copy ``values`` with constant floating-point tensors replaced by zeros (the bias-free network)."""
    if isinstance(template, Ref):
        if not live[template.index] and isinstance(values, Tensor) and values.is_floating_point():
            return torch.zeros_like(values)
        return values
    if isinstance(template, (tuple, list)):
        seq = [_zero_constants(t, v, live) for t, v in zip(template, values)]
        return tuple(seq) if isinstance(template, tuple) else seq
    return values


def top_classes(k: int) -> Callable[[Tensor], Tensor]:
    """The ``k`` highest-scoring classes of each image, best first (a ``targets`` choice)."""
    if k < 1:
        raise ValueError(f"top_classes needs k >= 1, got {k}")
    return lambda logits: logits.topk(min(k, logits.shape[1]), dim=1).indices


def _class_columns(choice: Any, logits: Tensor, what: str) -> Tensor:
    """``choice`` as class indices of shape ``(N, K)`` (None: the predicted class)."""
    n, c = logits.shape
    if choice is None:
        return logits.argmax(dim=1, keepdim=True)
    if callable(choice):
        choice = choice(logits)
    t = torch.as_tensor(choice, device=logits.device).long()
    if t.ndim == 0:
        t = t.expand(n)
    if t.ndim == 1:
        t = t.view(-1, 1)
    if t.ndim != 2 or t.shape[0] != n or t.shape[1] < 1:
        raise ValueError(f"{what} must be None, an int, {n} ints or {n} rows of ints; got shape {tuple(t.shape)}")
    if bool(((t < 0) | (t >= c)).any()):
        raise ValueError(f"{what} class out of range 0..{c - 1}: {t.tolist()}")
    return t


def _scopes(module: str) -> list[str]:
    """``a.b.c`` → ``a``, ``a.b``, ``a.b.c``: the module names a step lies inside."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _layer_relevance(s: Step, r: Any, n: int, layout: dict[int, tuple[int, int]]) -> Tensor:
    """The relevance arriving at step ``s``'s output, one image per row, as a copy."""
    if isinstance(r, dict) or not isinstance(r, Tensor):
        raise UnsupportedOpError(s.op, s.name, s.module, "layers=: this output is a tuple, not one tensor")
    if s.index in layout or r.ndim < 2 or r.shape[0] != n:
        raise UnsupportedOpError(
            s.op, s.name, s.module, "layers=: this output does not hold one image per row; name an enclosing module"
        )
    return r.detach().clone()


def explain(
    model: torch.nn.Module,
    inputs: Tensor,
    composite: "str | Mapping[str, Any] | Composite" = "epsilon_plus_flat",
    target: ClassChoice = None,
    *,
    contrast: ClassChoice = None,
    layers: Sequence[str] = (),
    ignore_bias: bool = False,
    precision: str = "auto",
    **options: Any,
) -> Explanation:
    """Explain ``model``'s logit for ``target`` on ``inputs`` with LRP.

    ``composite`` is a preset name (see :data:`lrpcli.composites.PRESETS`) or a selector mapping;
    ``options`` set rule parameters (``epsilon``, ``gamma``, ``stabilizer``, ``low``, ``high``);
    ``ignore_bias`` explains the bias-free network — every conv/dense bias, folded BatchNorm
    shift and added constant set to zero, in the forward pass too — whose target logit is then
    f(x), and LRP-0 conserves exactly (ΣR_pixels = f(x)); ``logits`` and the predicted target
    are still the model's own.
    ``precision``: ``"auto"`` computes in the model's dtype and redoes in float64 any image whose
    ledger does not close to 1e-5 (float32 rounding, with relevance masses far above f(x));
    ``"model"`` never redoes; ``"float64"`` always computes in float64;
    :attr:`Explanation.redone` says which images were redone.
    ``contrast`` and ``layers``: see :meth:`Explainer.__call__`.
    The model is not modified: no hooks, same parameters, same train/eval mode.
    """
    explainer = Explainer(model, composite, ignore_bias=ignore_bias, precision=precision, **options)
    return explainer(inputs, target, contrast=contrast, layers=layers)
