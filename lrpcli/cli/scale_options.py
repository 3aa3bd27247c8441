"""Options for running past one process: ``--shard`` (explain, evaluate), ``--backend`` and
``--ray-address`` (explain). Imports nothing heavy (``--help`` must not import torch or ray)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

__all__ = ["BackendChoice", "BackendOption", "RayAddressOption", "ShardOption"]


class BackendChoice(str, Enum):
    """Where ``lrp explain`` runs the images: in this process, or on a Ray cluster."""

    local = "local"
    ray = "ray"


ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N|auto|auto/N",
        help="Take only shard K of N of the inputs (a stable hash of each input's mirrored path), "
        "for array jobs; auto: K/N from SLURM_ARRAY_TASK_ID/COUNT, auto/N: K from "
        "JOB_COMPLETION_INDEX (Kubernetes). Merge the shards with lrp merge.",
        show_default=False,
    ),
]
BackendOption = Annotated[
    BackendChoice,
    typer.Option(
        "--backend",
        case_sensitive=False,
        help="local: this process; ray: a Ray Data pipeline (pip install 'lrpcli\\[ray]'), one "
        "explainer per actor and GPU, on the cluster at --ray-address or a local Ray instance.",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDR",
        help="With --backend ray: the Ray cluster to join (e.g. auto, or HOST:6379 after ray start "
        "--head); --out must be a folder every node sees. Default: start a local Ray instance.",
        show_default=False,
    ),
]
