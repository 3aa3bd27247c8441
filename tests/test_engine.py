"""The engine end to end: agreement with Zennit, the conservation ledger, model integrity."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from conftest import SAMPLES, calibrated

import lrpcli
from lrpcli import PRESETS, Explainer, UnsupportedOpError, explain

SIZE = 224
LOW = torch.tensor([-2.1179, -2.0357, -1.8044]).view(1, 3, 1, 1)  # ImageNet-normalised pixel 0
HIGH = torch.tensor([2.2489, 2.4286, 2.6400]).view(1, 3, 1, 1)  # ImageNet-normalised pixel 1


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7)).clamp(-2.0, 2.2)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {name: calibrated(name, size=SIZE) for name in ("vgg16", "resnet50")}


def _zennit_composite(name: str, canonizers: list) -> object:
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat

    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=canonizers)
    if name == "epsilon_gamma_box":
        return EpsilonGammaBox(low=LOW, high=HIGH, canonizers=canonizers)
    return EpsilonAlpha2Beta1(canonizers=canonizers)


def _zennit_relevance(model: torch.nn.Module, name: str, composite: str, x: torch.Tensor, targets: torch.Tensor):
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    base = ResNetCanonizer if name.startswith("resnet") else VGGCanonizer

    class ExactMerge(base):  # type: ignore[valid-type,misc]
        """Zennit's canonizer, with the identity BatchNorm it leaves behind made exact.

        Zennit 0.5.1 merges BatchNorm into the convolution but leaves ``eps`` in the now
        "identity" BatchNorm, which therefore still divides by sqrt(1 + eps) at every block
        (a 5e-6 relative shrink per BatchNorm, 1e-4..1e-3 of max|R| after ResNet50's 53).
        Setting eps = 0 on the oracle's private copy makes it compute the model it claims to.
        """

        def apply(self, root):  # type: ignore[no-untyped-def]
            instances = super().apply(root)
            for m in root.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eps = 0.0
            return instances

    zmodel = copy.deepcopy(model)
    with Gradient(model=zmodel, composite=_zennit_composite(composite, [ExactMerge()])) as attributor:
        onehot = torch.nn.functional.one_hot(targets, 1000).to(x.dtype)
        _, relevance = attributor(x.clone(), lambda out: out * onehot)
    return relevance


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_matches_zennit(models, batch, name: str, composite: str) -> None:
    model = models[name]
    # coverage=False: the presets' first-layer rule exactly as Zennit has it (no grid fix)
    ours = explain(model, batch, composite, low=LOW, high=HIGH, coverage=False)
    theirs = _zennit_relevance(model, name, composite, batch, ours.targets)
    for i in range(batch.shape[0]):
        scale = float(theirs[i].abs().max())
        diff = float((ours.relevance[i] - theirs[i]).abs().max())
        assert diff <= 1e-4 * scale, f"image {i}: max|Δ| = {diff:.3g}, max|R_zennit| = {scale:.3g}"
    # and the ledger closes on the same explanation
    assert float(ours.ledger.relative_error().max()) <= 1e-5


@pytest.mark.slow
def test_zennit_agreement_without_oracle_fix_is_rounding_level(models, batch) -> None:
    """Documents the size of Zennit's BatchNorm-eps artefact that the oracle fix removes."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    model = models["resnet50"]
    ours = explain(model, batch, "epsilon_plus_flat", coverage=False)
    with Gradient(model=copy.deepcopy(model), composite=EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attr:
        _, theirs = attr(batch.clone(), lambda out: out * torch.nn.functional.one_hot(ours.targets, 1000))
    rel = float((ours.relevance - theirs).abs().max() / theirs.abs().max())
    # the artefact is real (so the fix above matters) but small: the same rules, not different ones
    assert 1e-5 < rel < 5e-2, rel


MODELS_FOR_LEDGER = ["vgg16", "resnet50", "densenet121", "mobilenet_v2"]
#: the big ones are marked slow (make test-fast leaves them out)
LEDGER_PARAMS = [
    pytest.param(name, marks=pytest.mark.slow) if name in ("vgg16", "resnet50", "densenet121") else name
    for name in MODELS_FOR_LEDGER + ["efficientnet_lite0"]
]


@functools.cache
def ledger_model(name: str) -> torch.nn.Module:
    """The models of the ledger tests, each built once and only when a test asks for it."""
    if name == "efficientnet_lite0":
        from lrpcli.models import efficientnet_lite0

        return efficientnet_lite0()
    return calibrated(name, size=64)


def _input_for(name: str) -> torch.Tensor:
    size = 224 if name == "efficientnet_lite0" else 64
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", LEDGER_PARAMS)
def test_ledger_closes_for_every_preset(name: str) -> None:
    model = ledger_model(name)
    x = _input_for(name)
    for composite in PRESETS:
        e = explain(model, x, composite, low=-3.0, high=3.0)
        assert torch.isfinite(e.relevance).all()
        err = e.ledger.relative_error()
        assert float(err.max()) <= 1e-5, f"{composite}: relative closure error {err.tolist()}"
        # the ledger is not trivially balanced: something was absorbed, and it is named
        assert float(e.ledger.absorbed().abs().max()) > 0
        for entry in e.ledger.entries:
            assert float(entry.residual.abs().max()) <= 1e-4 * float(e.ledger.output.abs().max()) + 1e-9


@pytest.mark.parametrize("name", LEDGER_PARAMS)
def test_bias_free_lrp0_conserves_exactly(name: str) -> None:
    model = ledger_model(name)
    x = _input_for(name)
    e = explain(model, x, {"conv": "lrp0", "linear": "lrp0"}, ignore_bias=True, stabilizer=0.0)
    rel = (e.ledger.pixels - e.ledger.output).abs() / e.ledger.output.abs()
    assert float(rel.max()) <= 1e-5, rel.tolist()
    assert float(e.ledger.absorbed().abs().max()) <= 1e-6 * float(e.ledger.output.abs().max())


def test_bias_absorbs_when_kept() -> None:
    model = ledger_model("resnet50")
    e = explain(model, _input_for("resnet50"), "epsilon")
    bias = sum(float(en.bias.abs().sum()) for en in e.ledger.entries)
    assert bias > 0
    # pixel sum differs from f(x) exactly by what the ledger names
    torch.testing.assert_close(e.ledger.pixels + e.ledger.absorbed(), e.ledger.output, rtol=1e-5, atol=0)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_model_left_exactly_as_it_was() -> None:
    model = calibrated("resnet18", size=64)
    model.layer2.train()  # a mixed train/eval state must survive
    modes = {n: m.training for n, m in model.named_modules()}
    before = _snapshot(model)
    ptrs = {k: v.data_ptr() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        out_before = model(x)
    for n, m in model.named_modules():
        m.training = modes[n]
    for composite in PRESETS:
        explain(model, x, composite, low=-3.0, high=3.0)
    assert {n: m.training for n, m in model.named_modules()} == modes
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
        assert after[k].data_ptr() == ptrs[k], k
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        assert not getattr(m, "_backward_pre_hooks", None)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), out_before)


def test_logits_match_the_model() -> None:
    model = ledger_model("efficientnet_lite0")
    x = _input_for("efficientnet_lite0")
    e = explain(model, x)
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(e.logits, ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(e.targets, ref.argmax(1))


def test_targets() -> None:
    model = calibrated("resnet18", size=64)
    x = torch.randn(3, 3, 64, 64)
    e_int = explain(model, x, target=5)
    assert e_int.targets.tolist() == [5, 5, 5]
    torch.testing.assert_close(e_int.ledger.output, e_int.logits[:, 5].double())
    e_list = explain(model, x, target=[1, 2, 3])
    assert e_list.targets.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x, target=1000)
    with pytest.raises(ValueError, match="3 ints"):
        explain(model, x, target=[1, 2])


def test_batch_results_do_not_depend_on_batch_mates() -> None:
    model = calibrated("resnet18", size=64)
    x = torch.randn(3, 3, 64, 64)
    together = explain(model, x, "epsilon_gamma_box", low=-3.0, high=3.0).relevance
    alone = explain(model, x[1:2], "epsilon_gamma_box", low=-3.0, high=3.0).relevance
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-6 * float(alone.abs().max()))


def test_explainer_is_reusable_and_cached() -> None:
    model = calibrated("resnet18", size=64)
    ex = Explainer(model, "epsilon_plus_flat")
    x = torch.randn(2, 3, 64, 64)
    r1 = ex(x).relevance
    r2 = ex(x).relevance
    assert torch.equal(r1, r2)
    assert lrpcli.prepare(model) is ex.program
    with torch.no_grad():
        model.fc.weight.mul_(2.0)  # in-place change: the prepared program must be rebuilt
    assert lrpcli.prepare(model) is not ex.program


class OddModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        h = torch.erf(h)  # no LRP rule for this
        return self.head(h.mean((2, 3)))


def test_unsupported_op_names_op_node_and_module() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        explain(OddModel(), torch.randn(1, 3, 8, 8))
    msg = str(info.value)
    assert "erf" in msg and "'erf'" in msg  # the op and the graph node
    assert info.value.node == "erf"


class TwoSignalProduct(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 1)
        self.b = torch.nn.Conv2d(3, 4, 1)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.a(x) * self.b(x)).mean((2, 3)))


def test_product_of_two_signals_is_refused_with_module_path() -> None:
    with pytest.raises(UnsupportedOpError, match="product of two signals") as info:
        explain(TwoSignalProduct(), torch.randn(1, 3, 8, 8))
    assert "only as signal × gate" in str(info.value)


def test_device_mismatch_is_explained() -> None:
    model = calibrated("resnet18", size=64)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: the device-mismatch message cannot be provoked")
    with pytest.raises(ValueError, match="move one of them"):
        explain(model, torch.randn(1, 3, 64, 64, device="cuda"))


def test_relevance_concentrates_on_the_cup() -> None:
    """epsilon_plus_flat on the real EfficientNet-Lite0 puts the evidence for "espresso" on the cup.

    After resize 256 / centre crop 224, the cup with its crema spans about x 32..182, y 0..170
    of coffee.png's crop (measured on the photo), the rest being saucer and wooden table. The
    check: the density of positive relevance inside that box is at least twice the density
    outside it. A heatmap spread evenly or over the table would fail it.
    """
    from PIL import Image

    from lrpcli.io.preprocess import preprocess
    from lrpcli.models import EFFICIENTNET_LITE_PREPROCESS, efficientnet_lite0, imagenet_categories

    model = efficientnet_lite0()
    x, _ = preprocess(Image.open(SAMPLES / "coffee.png").convert("RGB"), EFFICIENTNET_LITE_PREPROCESS)
    e = explain(model, x[None], "epsilon_plus_flat")
    assert imagenet_categories()[int(e.targets[0])] == "espresso"
    pos = e.relevance[0].sum(0).clamp(min=0)
    inside = torch.zeros_like(pos, dtype=torch.bool)
    inside[0:170, 32:182] = True
    density_in = float(pos[inside].mean())
    density_out = float(pos[~inside].mean())
    assert density_in >= 2.0 * density_out, (density_in, density_out)
    assert float(e.ledger.relative_error().max()) <= 1e-5


def test_auto_precision_redoes_images_whose_ledger_does_not_close() -> None:
    """ε everywhere on ResNet50: pixel relevance masses ~1000× f(x), beyond float32's reach."""
    model = ledger_model("resnet50")
    x = _input_for("resnet50")
    fast = explain(model, x, "epsilon", precision="model")
    assert fast.ledger.precision == ["float32", "float32"]
    assert float(fast.ledger.relative_error().max()) > 1e-5  # float32 alone cannot close it here
    auto = explain(model, x, "epsilon")
    assert auto.ledger.precision == ["float64", "float64"]
    assert float(auto.ledger.relative_error().max()) <= 1e-5
    assert auto.relevance.dtype == torch.float32
    # the same explanation, computed more exactly (float32 noise is visible but small)
    cos = torch.nn.functional.cosine_similarity(auto.relevance.flatten(1), fast.relevance.flatten(1))
    assert float(cos.min()) > 0.99, cos.tolist()
    both = explain(model, x, "epsilon", precision="float64")
    assert both.ledger.precision == ["float64", "float64"]
    torch.testing.assert_close(both.relevance, auto.relevance)
    ok = explain(model, x, "epsilon_plus_flat")
    assert ok.ledger.precision == ["float32", "float32"]


def test_ignore_bias_explains_the_bias_free_network_for_the_models_prediction() -> None:
    model = ledger_model("efficientnet_lite0")
    x = _input_for("efficientnet_lite0")
    e = explain(model, x, "epsilon_plus_flat", ignore_bias=True)
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(e.logits, ref, rtol=1e-4, atol=1e-4)  # the model's own outputs
    assert torch.equal(e.targets, ref.argmax(1))  # and its own prediction
    # f(x) is the bias-free network's logit for that class: not the model's
    assert float((e.ledger.output - ref[range(2), e.targets].double()).abs().min()) > 1e-3
    assert float(e.ledger.relative_error().max()) <= 1e-5


def test_box_bounds_given_as_lists_do_not_grow_the_cache() -> None:
    """Bounds as Python lists become new tensors each call; the z^B cache must key on their values."""
    model = calibrated("resnet18", size=64)
    ex = Explainer(model, "epsilon_gamma_box", low=[-2.1, -2.0, -1.8], high=[2.2, 2.4, 2.6])
    x = torch.randn(2, 3, 64, 64)
    first = ex(x).relevance
    layer = ex.program.affine_steps()[0].affine
    size = len(layer._cache)
    for _ in range(4):
        torch.testing.assert_close(ex(x).relevance, first)
    assert len(layer._cache) == size
    other = Explainer(model, "epsilon_gamma_box", low=[-1.0] * 3, high=[1.0] * 3)(x).relevance
    assert not torch.allclose(other, first)  # different bounds are not served from the cache


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_outputs_kept_only_where_needed_give_identical_relevance(composite: str) -> None:
    """z is dropped for rules that never read it and replaced by an in-place relu(z) where safe; γ
    uses its one-weight form where relevance arrives only at positive outputs."""
    model = calibrated("vgg11", size=32)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    lean = Explainer(model, composite, low=-3.0, high=3.0, precision="model")
    full = Explainer(model, composite, low=-3.0, high=3.0, precision="model")
    full._relu_inplace, full._no_output, full._positive = set(), set(), set()
    # every conv/dense layer but the last feeds a ReLU whose zeros get zero relevance: all 10 ReLUs run
    # in place, and relevance reaches those 10 layers only where z > 0
    assert len(lean._relu_inplace) == 10 and len(lean._positive) == 10
    if composite == "epsilon_alpha2_beta1":  # αβ reads z (n = z − p) only where its input is ≥ 0
        assert lean._no_output == {lean.program.affine_steps()[0].index}
    elif composite == "epsilon_gamma_box":  # γ on positive outputs needs no z (the first conv is z^B)
        assert len(lean._no_output) == 7
    else:
        assert not lean._no_output
    a, b = lean(x), full(x)
    if composite == "epsilon_gamma_box":  # one weight W + γW⁺ instead of W and W⁺: rounded differently
        torch.testing.assert_close(a.relevance, b.relevance, rtol=1e-4, atol=1e-6 * float(b.relevance.abs().max()))
        assert float(a.ledger.relative_error().max()) <= 1e-5
    else:
        assert torch.equal(a.relevance, b.relevance)
        torch.testing.assert_close(a.ledger.closure_error(), b.ledger.closure_error(), rtol=0, atol=1e-12)


def test_relu_output_feeding_a_flat_layer_keeps_its_input() -> None:
    """Flat spreads relevance onto zero inputs too: the layer before must keep its own z."""
    model = calibrated("vgg11", size=32)
    ex = Explainer(model, {"conv": "epsilon", "linear": "epsilon", "features.3": "flat"}, precision="model")
    conv0 = next(s for s in ex.program.affine_steps() if s.module == "features.0")
    relu0 = next(s for s in ex.program.steps if s.args and getattr(s.args[0], "index", -1) == conv0.index)
    assert relu0.index not in ex._relu_inplace
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    assert float(ex(x).ledger.relative_error().max()) <= 1e-5


def test_gamma_one_weight_form_after_relu6() -> None:
    """ReLU6 zeroes exactly z <= 0 too: γ layers before it need no z, whatever the sign of their
    input (but ReLU6 never runs in place)."""
    model = calibrated("mobilenet_v2", size=32)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    lean = Explainer(model, "epsilon_gamma_box", low=-3.0, high=3.0, precision="model")
    full = Explainer(model, "epsilon_gamma_box", low=-3.0, high=3.0, precision="model")
    full._relu_inplace, full._no_output, full._positive = set(), set(), set()
    # 35 convs feed a ReLU6 whose zeros get no relevance: all but the first (z^B) need no z
    assert len(lean._positive) == 35 and len(lean._no_output) == 34 and not lean._relu_inplace
    a, b = lean(x), full(x)
    torch.testing.assert_close(a.relevance, b.relevance, rtol=1e-4, atol=1e-6 * float(b.relevance.abs().max()))
    assert float(a.ledger.relative_error().max()) <= 1e-5


@functools.cache
def _resnet18() -> torch.nn.Module:
    return calibrated("resnet18", size=32)


@pytest.mark.parametrize("treatment", ["absorb", "distribute", "ignore"])
@pytest.mark.parametrize("composite", sorted(PRESETS))
def test_every_preset_and_bias_treatment_closes_the_ledger(composite: str, treatment: str) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    exp = Explainer(_resnet18(), composite, low=-3.0, high=3.0, bias=treatment, epsilon="0.25std")(x)
    led = exp.ledger
    assert float(led.relative_error().max()) <= 1e-5
    affine = [e for e in led.entries if e.op.startswith("Conv") or e.op.startswith("Linear")]
    booked = torch.stack([e.bias for e in affine]).abs().sum(0)
    if treatment == "absorb":
        assert float(booked.min()) > 0 and all(e.distributed is None for e in affine)
    else:  # z^B (epsilon_gamma_box's first layer) has no bias term at all; every other rule books none
        assert float(booked.max()) == 0.0
    if treatment == "distribute":
        spread = led.distributed()
        assert float(spread.abs().min()) > 0
        # nothing went to biases: f(x) = ΣR_pixels + stabilisers + dropped
        rest = led.output - led.pixels - sum(e.stabilizer + e.dropped for e in led.entries)
        torch.testing.assert_close(rest, torch.zeros_like(rest), atol=1e-5 * float(led.output.abs().max()), rtol=0)


def test_distribute_sends_f_x_to_the_pixels() -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    absorb = Explainer(_resnet18(), "epsilon_plus_flat")(x).ledger
    spread = Explainer(_resnet18(), "epsilon_plus_flat", bias="distribute")(x).ledger
    assert float((absorb.pixel_share() - 1).abs().min()) > 0.1  # the folded BatchNorm shifts take a part
    torch.testing.assert_close(spread.pixel_share(), torch.ones(2, dtype=torch.float64), atol=1e-4, rtol=0)


def test_relative_epsilon_is_per_image() -> None:
    model = copy.deepcopy(_resnet18()).double()  # float64: batch size changes no rounding to speak of
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    both = Explainer(model, "epsilon", epsilon="0.25std", precision="model")(x)
    one = Explainer(model, "epsilon", epsilon="0.25std", precision="model")(x[1:])
    torch.testing.assert_close(both.relevance[1:], one.relevance, rtol=1e-9, atol=1e-12 * float(one.relevance.abs().max()))
    big = Explainer(model, "epsilon", epsilon="4std", precision="model")(x[1:])
    assert float(big.ledger.pixel_share()[0]) < float(one.ledger.pixel_share()[0])
