"""``lrp explain`` past one process: the ``--shard`` / ``--backend`` / ``--ray-address`` checks,
the explainers a run uses (built the same way in this process and in each Ray actor), and the
``--backend ray`` runner. ``ray`` is imported only by :func:`ray_runner`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrpcli.cli.errors import EXIT_USAGE, Fail
from lrpcli.cli.explain_options import ExplainOptions
from lrpcli.cli.loading import load_cli_config, load_cli_model, make_explainer, resolve_device
from lrpcli.cli.options import DeviceChoice
from lrpcli.config import Config
from lrpcli.core.engine import Explainer
from lrpcli.models.spec import LoadedModel
from lrpcli.run.pipeline import Pipeline, RunSettings
from lrpcli.run.shards import Shard, ShardError, parse_shard

__all__ = ["PipelineFactory", "check_backend", "explainers", "ray_runner", "shard_option"]


def shard_option(text: str | None) -> Shard | None:
    """``--shard`` parsed against this process's environment (usage error if it cannot be)."""
    try:
        return parse_shard(text, os.environ)
    except ShardError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None


def check_backend(o: ExplainOptions) -> None:
    """``--backend ray`` needs Ray and cannot stop at the first failure; ``--ray-address`` needs it."""
    if o.backend != "ray":
        if o.ray_address is not None:
            raise Fail(EXIT_USAGE, "--ray-address applies to --backend ray; add --backend ray or drop it")
        return
    if importlib.util.find_spec("ray") is None:
        raise Fail(EXIT_USAGE, "--backend ray needs Ray Data: pip install 'lrpcli[ray]' (or 'ray[data]')")
    if o.fail_fast:
        raise Fail(EXIT_USAGE, "--fail-fast works with --backend local only; drop it or use the local backend")


def explainers(
    o: ExplainOptions, cfg: Config, loaded: LoadedModel, overrides: dict[str, Any], compared: list[str]
) -> tuple[Explainer, list[tuple[str, Explainer]]]:
    """The run's explainer, and (``--composites``) the others drawn beside it, by name."""
    explainer = make_explainer(loaded, cfg)
    others: list[tuple[str, Explainer]] = []
    for name in compared[1:]:
        if name == "config":  # the config's own rules (cfg's were replaced by the first preset)
            base = load_cli_config(o.config, {k: v for k, v in overrides.items() if k != "rules"}, seed=o.seed)
            others.append((name, make_explainer(loaded, base)))
        else:
            others.append((name, make_explainer(loaded, cfg, name)))
    return explainer, others


@dataclass(frozen=True)
class PipelineFactory:
    """Builds, in a Ray actor, the pipeline this process would run: the same config (options and
    overrides), model and explainers, on the actor's GPU when Ray gave it one."""

    options: ExplainOptions
    overrides: dict[str, Any]
    compared: list[str]
    settings: RunSettings
    out: Path

    def __call__(self) -> Pipeline:
        o = self.options
        cfg = load_cli_config(o.config, self.overrides, seed=o.seed)
        device = resolve_device(DeviceChoice.cpu if o.device is DeviceChoice.cpu else DeviceChoice.auto)
        loaded = load_cli_model(cfg, device)
        explainer, others = explainers(o, cfg, loaded, self.overrides, self.compared)
        main = self.compared[0] if self.compared else ""
        return Pipeline(
            explainer, loaded.categories, self.settings, out_dir=self.out, device=device, comparisons=others, main_name=main
        )


def ray_runner(factory: PipelineFactory) -> Any:
    """A started :class:`lrpcli.run.ray_backend.RayRunner` (imports ray) for ``factory``'s run."""
    from lrpcli.run.ray_backend import RayRunner

    o = factory.options
    try:
        return RayRunner(factory, factory.settings, factory.out, address=o.ray_address, device=o.device.value)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {o.ray_address}" if o.ray_address else "a local Ray instance"
        raise Fail(
            EXIT_USAGE,
            f"--backend ray: cannot start or join {where} ({exc}); check the address (ray status "
            "on the head node prints it), or leave --ray-address out to start a local instance",
        ) from None
