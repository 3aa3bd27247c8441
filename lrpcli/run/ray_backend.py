"""``lrp explain --backend ray``: the same pipeline as Ray Data steps, on one machine or a cluster.

The inputs become a Ray Dataset with one row per batch (the batches the local pipeline would
form, so every image is explained in the same company and gets the same numbers). Three
``map_batches`` steps run the local pipeline's own stages, each in a pool of long-lived Ray
actors (the imports and set-up are paid once per process, not per batch): decoding
(:meth:`Pipeline.load`), explaining (:meth:`Pipeline.explain`; each actor builds the model once:
one actor per GPU with ``num_gpus=1`` when the cluster has GPUs, else as many as nodes, each with
as many torch threads as the smallest node has CPUs) and drawing/writing (:meth:`Pipeline.write`,
atomic files in ``--out``). Every step works in the driver's working directory, so the inputs,
``--out`` and that folder must be paths every node sees (a shared filesystem). The driver
receives the finished entries in input order and hands them to the caller (the report and the
journal), once each: a task or actor that Ray retries after a worker died may deliver a batch
again, and repeated images are dropped.

Only this module imports ``ray``, and only ``--backend ray`` imports this module.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from lrpcli.io.inputs import ImageInput
from lrpcli.run.entries import ImageEntry
from lrpcli.run.outputs import OutputPaths
from lrpcli.run.pipeline import Drawing, Pipeline, Prepared, RunOutcome, RunSettings, error_entry, merge_written

__all__ = ["LOCAL_OBJECT_STORE_BYTES", "RayRunner"]

LOCAL_OBJECT_STORE_BYTES = 2 << 30
"""Object store of a local Ray instance: enough for many batches of decoded photos in flight."""

_ACTOR_CPUS = 0.5  # logical CPUs per actor: the three steps overlap on the same cores, as the local threads do

Job = tuple[int, ImageInput, OutputPaths]
"""One image of a batch row: its index (into the inputs of the run), the input, its outputs."""


@dataclass
class _Work:
    """One batch of images on its way through the steps (one Ray Data row, column ``work``): a
    Python object, which Ray keeps as one (no column types to convert it to)."""

    value: Any


def _rows(rows: dict[str, np.ndarray], step: Callable[[Any], Any]) -> dict[str, np.ndarray]:
    """Apply ``step`` to the content of each row of a Ray Data batch."""
    work = np.empty(len(rows["work"]), dtype=object)
    for i, row in enumerate(rows["work"]):
        work[i] = _Work(step(row.value))
    return {"work": work}


class _Stage:
    """A Ray actor that keeps a model-less pipeline for the decoding or writing step (a
    long-lived process: the imports and set-up are paid once, not for every batch)."""

    def __init__(self, settings: RunSettings, out_dir: str, cwd: str) -> None:
        os.chdir(cwd)  # the paths are the driver's, relative to its working directory
        torch.set_num_threads(1)
        self.pipeline = Pipeline(None, [], settings, out_dir=Path(out_dir))


class _Decode(_Stage):
    """Ray actor: decode and preprocess each image of each batch row (:meth:`Pipeline.load`)."""

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _rows(rows, self._batch)

    def _batch(self, jobs: list[Job]) -> list[tuple[Job, Prepared]]:
        return [(job, self.pipeline.load(job[1])) for job in jobs]


class _Explain:
    """Ray actor: builds the pipeline (model and explainers) once, then explains batch rows."""

    def __init__(self, factory: Callable[[], Pipeline], threads: int | None, cwd: str) -> None:
        os.chdir(cwd)  # the paths are the driver's, relative to its working directory
        if threads:
            torch.set_num_threads(threads)
        self.pipeline = factory()

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _rows(rows, self._batch)

    def _batch(self, loaded: list[tuple[Job, Prepared]]) -> tuple[list[tuple[ImageEntry, Drawing | None]], dict[int, Any]]:
        items = {i: item for (i, item, _), _ in loaded}
        ready = [(job[0], prep) for job, prep in loaded if prep.error is None]
        done: list[tuple[ImageEntry, Drawing | None]] = [
            (error_entry(i, item, prep.error, prep), None) for (i, item, _), prep in loaded if prep.error is not None
        ]
        if ready:
            explained = self.pipeline.explain(ready, items)
            if isinstance(explained, str):
                done += [(error_entry(i, items[i], explained, prep), None) for i, prep in ready]
            else:
                drawings, make = explained
                done += list(zip(make(), drawings))
        done.sort(key=lambda pair: pair[0].index)
        for _, prep in loaded:
            prep.tensor = None  # the writers need the view, not the model's input
        return done, {job[0]: (job, prep) for job, prep in loaded}


class _Write(_Stage):
    """Ray actor: draw and write each explained image's files (:meth:`Pipeline.write`)."""

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _rows(rows, self._batch)

    def _batch(self, explained: tuple[list[tuple[ImageEntry, Drawing | None]], dict[int, Any]]) -> list[ImageEntry]:
        done, jobs = explained
        entries = []
        for entry, drawing in done:
            if drawing is not None:
                (_, item, plan), prep = jobs[entry.index]
                merge_written(entry, functools.partial(self.pipeline.write, drawing, prep, item, plan))
            entries.append(entry)
        return entries


class _ResultsStream(io.TextIOBase):
    """``sys.stdout`` while Ray runs: what the thread running ``lrp`` writes (the results) goes to
    standard output; what Ray prints there (worker deaths, retries: from its own threads or from
    Ray's code on ours) goes to standard error."""

    def __init__(self, results: io.TextIOWrapper, thread: threading.Thread) -> None:
        self.results = results
        self.thread = thread

    def write(self, text: str) -> int:  # type: ignore[override]
        caller = str(sys._getframe(1).f_globals.get("__name__", ""))
        ours = threading.current_thread() is self.thread and caller.partition(".")[0] != "ray"
        return (self.results if ours else sys.stderr).write(text)

    def flush(self) -> None:
        self.results.flush()
        sys.stderr.flush()

    def fileno(self) -> int:
        return self.results.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.results.encoding


def _results_only_on_stdout() -> Callable[[], None]:
    """Keep standard output for results while Ray runs: file descriptor 1 points at standard error
    (Ray's native core worker logs there) and ``sys.stdout`` becomes a :class:`_ResultsStream` on
    the real standard output. Returns the function that undoes it."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return lambda: None  # not a real file (a test's captured output): nothing to protect
    if fd != 1:
        return lambda: None
    original = sys.stdout
    original.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    results = io.TextIOWrapper(io.FileIO(saved, "w"), encoding=original.encoding, errors=original.errors, write_through=True)
    sys.stdout = _ResultsStream(results, threading.current_thread())

    def undo() -> None:
        sys.stdout.flush()
        os.dup2(saved, 1)
        results.close()
        sys.stdout = original

    return undo


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: what Slurm, a container or taskset gave it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class RayRunner:
    """Runs ``lrp explain``'s images on Ray: ``address`` (a cluster) or a local instance.

    ``factory`` builds, in each explaining actor, the :class:`Pipeline` with the model and
    explainers (it is pickled to the actors); ``device`` is ``cpu`` (CPU actors even when there
    are GPUs) or anything else (one actor per GPU when the cluster has GPUs). Use it as a context
    manager: a local instance it started is shut down on exit (a cluster is only disconnected from).
    """

    def __init__(
        self,
        factory: Callable[[], Pipeline],
        settings: RunSettings,
        out_dir: Path,
        *,
        address: str | None = None,
        device: str = "auto",
        num_cpus: int | None = None,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.cwd = os.getcwd()  # paths stay as given: every node works in this folder
        self.address = address
        self.started = False
        self._restore_stdout: Callable[[], None] = lambda: None
        if not ray.is_initialized():
            self._restore_stdout = _results_only_on_stdout()
            kwargs: dict[str, Any] = {"address": address} if address else {
                "num_cpus": num_cpus or _usable_cpus(),
                "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
            }
            try:
                ray.init(
                    **kwargs,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,  # stderr is the user's: progress and errors of lrp
                    configure_logging=True,
                )
            except BaseException:
                self._restore_stdout()
                raise
            self.started = True  # shut down (local) or disconnected (cluster) by close()
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # entries reach the driver in input order
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        resources = ray.cluster_resources()
        gpus = 0 if device == "cpu" else int(resources.get("GPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
        self.gpus_per_actor = 1 if gpus else 0
        self.actors = gpus or max(1, len(nodes))
        # CPU actors: as many as nodes, each running torch on a node's cores (Ray would set one thread)
        self.threads = None if gpus else int(min(n["Resources"]["CPU"] for n in nodes)) if nodes else None

    def describe(self) -> dict[str, Any]:
        """The report's ``run.backend``: where the images ran."""
        return {
            "name": "ray",
            "ray_version": ray.__version__,
            "address": self.address or "local",
            "actors": self.actors,
            "gpus_per_actor": self.gpus_per_actor,
            "threads_per_actor": self.threads,
        }

    def run(
        self,
        inputs: Sequence[ImageInput],
        outputs: Sequence[OutputPaths],
        emit: Callable[[ImageEntry], None],
        stop: threading.Event | None = None,
    ) -> RunOutcome:
        """Explain ``inputs`` (with their planned ``outputs``); ``emit`` gets each entry once, in
        input order, after its files were written."""
        stop = stop or threading.Event()
        outcome = RunOutcome()
        bs = max(1, self.settings.batch_size)
        rows = [
            {"work": _Work([(i, inputs[i], outputs[i]) for i in range(start, min(start + bs, len(inputs)))])}
            for start in range(0, len(inputs), bs)
        ]
        if not rows:
            return outcome
        out_dir = self.out_dir.as_posix()
        stage_args = {"settings": self.settings, "out_dir": out_dir, "cwd": self.cwd}
        helpers = ray.data.ActorPoolStrategy(min_size=1, max_size=max(2, self.actors))
        dataset = (
            ray.data.from_items(rows, override_num_blocks=len(rows))
            .map_batches(_Decode, batch_size=1, fn_constructor_kwargs=stage_args, compute=helpers, num_cpus=_ACTOR_CPUS)
            .map_batches(
                _Explain,
                batch_size=1,
                fn_constructor_kwargs={"factory": self.factory, "threads": self.threads, "cwd": self.cwd},
                compute=ray.data.ActorPoolStrategy(size=self.actors),
                num_cpus=_ACTOR_CPUS,
                num_gpus=self.gpus_per_actor,
            )
            .map_batches(_Write, batch_size=1, fn_constructor_kwargs=stage_args, compute=helpers, num_cpus=_ACTOR_CPUS)
        )
        seen: set[int] = set()
        for row in dataset.iter_rows():
            for entry in row["work"].value:
                if entry.index in seen:  # delivered again after a retry
                    continue
                seen.add(entry.index)
                outcome.processed += 1
                outcome.failed += int(not entry.ok)
                emit(entry)
            if stop.is_set():
                outcome.interrupted = True
                break
        return outcome

    def close(self) -> None:
        """Shut down the local Ray instance this runner started, or disconnect from the cluster."""
        if self.started:
            ray.shutdown()
            self.started = False
        self._restore_stdout()
        self._restore_stdout = lambda: None

    def __enter__(self) -> RayRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
