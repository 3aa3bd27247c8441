"""The batch loop of ``lrp explain``: load → explain → render/write, overlapped.

* Decoding and preprocessing run in a thread pool; the next batches are prefetched while the
  current one is explained.
* Heatmap/overlay rendering and the (atomic) file writes run in a second thread pool, so the
  model never waits on the disk; at most a bounded number of images are in flight, so memory
  stays flat.
* Results are handed to a callback one image at a time, in input order, as soon as an image
  (and every image before it) is finished; nothing is kept afterwards. Building the report
  entries and the callback run in a third thread, so the thread that drives the model does
  nothing but load batches into it.
* A ``stop`` event (set by the CLI's SIGINT/SIGTERM handler) ends the run between batches;
  images already being written are finished, so no partial output file is ever left behind.

Where the outputs go is planned beforehand (:mod:`lrpcli.run.outputs`); each image becomes an
:class:`~lrpcli.run.entries.ImageEntry`. The stages (:meth:`Pipeline.load`, :meth:`Pipeline.explain`,
:meth:`Pipeline.write`) are public so that the Ray backend (:mod:`lrpcli.run.ray_backend`) runs
the very same code, one stage per Ray Data step.

Long because the stages and the threaded loop that overlaps them share their per-batch state
(prepared images, drawings, the batch's statistics) and read best side by side.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from lrpcli.core.ledger import Accounts
from lrpcli.io.decode import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from lrpcli.io.canvas import View
from lrpcli.io.inputs import ImageInput
from lrpcli.io.preprocess import Preprocess, preprocess, upscale_warning
from lrpcli.io.render import RenderSettings
from lrpcli.run.drawing import Comparison, Written, make_view, write_outputs
from lrpcli.run.entries import ImageEntry, Prediction, Result, Target, conservation_shares
from lrpcli.run.layers import layer_summary
from lrpcli.run.outputs import OutputPaths
from lrpcli.run.targets import TargetPlan

__all__ = ["Drawing", "Pipeline", "Prepared", "RunOutcome", "RunSettings", "error_entry", "merge_written"]

_PREFETCH_BATCHES = 2


@dataclass
class RunSettings:
    """Everything the loop needs besides the explainer."""

    preprocess: Preprocess
    render: RenderSettings = field(default_factory=RenderSettings)
    batch_size: int = 8
    workers: int = 2
    targets: TargetPlan = field(default_factory=TargetPlan)
    layers: tuple[str, ...] = ()  # --layer: modules whose arriving relevance is kept
    top_k: int = 5
    save_npy: bool = False
    fail_fast: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    ledger_steps: bool | int = True


@dataclass
class RunOutcome:
    """How the loop ended."""

    processed: int = 0
    failed: int = 0
    interrupted: bool = False
    stopped_early: bool = False


@dataclass
class Prepared:
    """One decoded and preprocessed image (or why it could not be loaded)."""

    tensor: torch.Tensor | None = None
    view: View | None = None
    box: list[float] | None = None
    size: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)
    load_s: float = 0.0
    error: str | None = None


class _Emitter:
    """Finishes and emits entries in input order, in its own thread (``lrp-emit``).

    The loop hands it one batch at a time: a function that builds the batch's entries (the
    per-image ledgers, top-k and report rows: Python work that would otherwise hold up the next
    explanation) and each entry's write future. The thread waits for each write, merges its
    result and calls ``emit``, so serialising reports and printing never run on the thread that
    drives the model. At most ``limit`` images are accepted but not yet emitted (:meth:`put`
    blocks), so memory stays flat when the disk is slow.
    """

    def __init__(self, emit: Callable[[ImageEntry], None], limit: int) -> None:
        self.emit = emit
        self.pending = threading.Semaphore(limit)
        self.queue: queue.SimpleQueue[tuple[Callable[[], list[ImageEntry]], list[Future[Written] | None]] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="lrp-emit", daemon=True)
        self.thread.start()

    def put(self, make: Callable[[], list[ImageEntry]], futures: list[Future[Written] | None]) -> None:
        """Queue one batch (entries in input order, built by ``make``); blocks while too many wait."""
        for _ in futures:
            self.pending.acquire()
        self.queue.put((make, futures))
        self.check()

    def check(self) -> None:
        """Re-raise, in the calling thread, an error that ended the emitting thread."""
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Emit everything queued, then end the thread."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self.check()

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            make, futures = item
            held = len(futures)  # permits this batch took in put()
            try:
                if self.error is None:
                    for entry, future in zip(make(), futures):
                        if future is not None:
                            merge_written(entry, future)
                        self.emit(entry)
                        self.pending.release()
                        held -= 1
            except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread by check()
                self.error = exc
            for _ in range(held):  # after an error: unblock the loop, which then raises it
                self.pending.release()


@dataclass(frozen=True)
class Drawing:
    """What to draw for one explained image: its relevance, the explained class's label,
    (``--composites``) the maps drawn beside it, (``--layer``) the relevance at inner modules,
    and (``--target topK``) the further maps."""

    relevance: Any  # np.ndarray, float32 (3, H, W)
    label: str
    comparisons: list[Comparison]
    layers: dict[str, Any] = field(default_factory=dict)  # name → np.ndarray, float32
    more: list[Drawing] = field(default_factory=list)


@dataclass
class _MapStats:
    """One map of every image of a batch (``--target topK`` has K): what its entries need."""

    targets: list[int]
    target_p: list[float]
    target_logit: list[float]
    contrasts: list[int] | None
    contrast_p: list[float]
    contrast_logit: list[float]
    positive: list[float]
    negative: list[float]
    conservation: list[float]
    accounts: Accounts
    #: per image: how it was recomputed in float64 (Redo.to_dict()), or None; empty: no such information
    redone: list[dict[str, Any] | None] = field(default_factory=list)
    #: --layer: name → the relevance arriving there, float32 (N, ...) on the CPU
    layers: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class _BatchStats:
    """What the entries of one explained batch need, computed on the loop's thread."""

    top_p: list[list[float]]
    top_i: list[list[int]]
    top_logit: list[list[float]]
    maps: list[_MapStats]
    explain_s: float
    compared: list[tuple[str, Accounts]] = field(default_factory=list)


@dataclass
class _MapOut:
    """One map of a batch as the loop keeps it: relevance and layers on the CPU, the ledger."""

    relevance: torch.Tensor  # float32 (N, 3, H, W)
    targets: list[int]
    contrasts: list[int] | None
    ledger: Any  # lrpcli.core.ledger.Ledger
    redone: list[dict[str, Any] | None]
    layers: dict[str, torch.Tensor]  # name → float32 (N, ...)

    @classmethod
    def of(cls, exp: Any) -> _MapOut:
        return cls(
            relevance=exp.relevance.detach().to("cpu", torch.float32),
            targets=exp.targets.detach().cpu().tolist(),
            contrasts=None if exp.contrasts is None else exp.contrasts.detach().cpu().tolist(),
            ledger=exp.ledger,
            redone=[None if r is None else r.to_dict() for r in getattr(exp, "redone", None) or []],
            layers={k: v.detach().to("cpu", torch.float32) for k, v in exp.layers.items()},
        )

    def layer_arrays(self, j: int) -> dict[str, Any]:
        return {name: rel[j].numpy() for name, rel in self.layers.items()}

    def stats(self, probs: torch.Tensor, logits: torch.Tensor) -> _MapStats:
        """The per-image numbers of this map's entries (whole-batch tensor work)."""
        t = torch.tensor(self.targets).view(-1, 1)
        c = None if self.contrasts is None else torch.tensor(self.contrasts).view(-1, 1)
        flat = self.relevance.flatten(1)
        return _MapStats(
            targets=self.targets,
            target_p=probs.gather(1, t).flatten().tolist(),
            target_logit=logits.gather(1, t).flatten().tolist(),
            contrasts=self.contrasts,
            contrast_p=[] if c is None else probs.gather(1, c).flatten().tolist(),
            contrast_logit=[] if c is None else logits.gather(1, c).flatten().tolist(),
            positive=flat.clamp(min=0).sum(1, dtype=torch.float64).tolist(),
            negative=flat.clamp(max=0).sum(1, dtype=torch.float64).tolist(),
            conservation=self.ledger.conservation_error().detach().cpu().tolist(),
            accounts=self.ledger.accounts(),
            redone=self.redone,
            layers=self.layers,
        )


def merge_written(entry: ImageEntry, future: Future[Written] | Callable[[], Written]) -> None:
    """Add what writing the entry's files gave (``future.result()``, or a call that writes
    them); a failed write makes the entry an error."""
    try:
        written = future.result() if isinstance(future, Future) else future()
    except Exception as exc:  # disk full, permission denied, ...
        entry.fail(f"cannot write outputs: {type(exc).__name__}: {exc}")
        return
    entry.outputs = written.outputs
    entry.render = written.render
    if entry.result is not None and entry.result.more is not None:
        for item, outputs in zip(entry.result.more, written.more):
            item["outputs"] = outputs
    timing = entry.timing
    timing["write_s"] = written.write_s
    timing["total_s"] = timing.get("load_s", 0.0) + timing.get("explain_s", 0.0) + written.write_s


def error_entry(index: int, item: ImageInput, message: str, prepared: Prepared | None) -> ImageEntry:
    """The entry of an image that could not be loaded or explained."""
    return ImageEntry(
        index=index,
        input=item.path.as_posix(),
        rel=item.rel.as_posix(),
        status="error",
        error=message,
        warnings=list(prepared.warnings) if prepared else [],
        timing={"load_s": prepared.load_s if prepared else 0.0},
    )


class Pipeline:
    """Explain images batch by batch with an :class:`lrpcli.Explainer` and write the outputs."""

    def __init__(
        self,
        explainer: Any,
        categories: Sequence[str],
        settings: RunSettings,
        *,
        out_dir: Path,
        device: torch.device | str = "cpu",
        comparisons: Sequence[tuple[str, Any]] = (),
        main_name: str = "",
    ) -> None:
        self.explainer = explainer
        self.categories = list(categories)
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.comparisons = list(comparisons)  # (name, explainer): drawn side by side with the main map
        self.main_name = main_name or "config"

    # -- stages -------------------------------------------------------------------------------
    def load(self, item: ImageInput) -> Prepared:
        """Decode and preprocess one image; a failure is kept in :attr:`Prepared.error`."""
        start = time.perf_counter()
        try:
            loaded = load_image(item.path, max_pixels=self.settings.max_pixels)
            tensor, crop = preprocess(loaded.image, self.settings.preprocess)
            view, box = make_view(loaded.image, crop, self.settings.preprocess, self.settings.render)
            size = loaded.image.size
            loaded.image.close()
            upscaled = upscale_warning(*size, self.settings.preprocess)
            warns = loaded.warnings + ([upscaled] if upscaled else [])
            return Prepared(tensor, view, box, size, warns, time.perf_counter() - start)
        except ImageLoadError as exc:
            return Prepared(error=exc.reason, load_s=time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the run
            reason = f"unexpected error while loading ({type(exc).__name__}: {exc})"
            return Prepared(error=reason, load_s=time.perf_counter() - start)

    def write(self, drawing: Drawing, prep: Prepared, item: ImageInput, paths: OutputPaths) -> Written:
        """Draw and write one explained image's files (atomically), its further maps' too."""
        assert prep.view is not None
        written = [
            write_outputs(
                d.relevance,
                prep.view,
                p,
                self.settings.render,
                out_dir=self.out_dir,
                source=item.path.as_posix(),
                label=d.label,
                comparisons=d.comparisons,
                photo_title=f"{item.path.name}\nexplained: {d.label}",
                crop=prep.box,
                layers=d.layers,
            )
            for d, p in zip([drawing, *drawing.more], [paths, *paths.more])
        ]
        first = written[0]
        total = sum(w.write_s for w in written)
        return Written(first.outputs, first.render, total, [w.outputs for w in written[1:]])

    # -- loop ---------------------------------------------------------------------------------
    def run(
        self,
        inputs: Sequence[ImageInput],
        outputs: Sequence[OutputPaths],
        emit: Callable[[ImageEntry], None],
        stop: threading.Event | None = None,
    ) -> RunOutcome:
        """Process ``inputs`` (with their planned ``outputs``); ``emit`` gets each entry in order."""
        stop = stop or threading.Event()
        s = self.settings
        outcome = RunOutcome()

        def counted(entry: ImageEntry) -> None:
            outcome.processed += 1
            if not entry.ok:
                outcome.failed += 1
            emit(entry)

        n = len(inputs)
        bs = max(1, s.batch_size)
        batches = [range(i, min(i + bs, n)) for i in range(0, n, bs)]
        emitter = _Emitter(counted, limit=2 * bs + 2 * max(1, s.workers))
        loaders = ThreadPoolExecutor(max_workers=max(1, s.workers), thread_name_prefix="lrp-load")
        writers = ThreadPoolExecutor(max_workers=max(1, s.workers), thread_name_prefix="lrp-write")
        queued: deque[tuple[range, list[Future[Prepared]]]] = deque()
        next_batch = 0

        def prefetch() -> None:
            nonlocal next_batch
            while len(queued) <= _PREFETCH_BATCHES and next_batch < len(batches):
                indexes = batches[next_batch]
                next_batch += 1
                queued.append((indexes, [loaders.submit(self.load, inputs[i]) for i in indexes]))

        try:
            prefetch()
            while queued:
                if stop.is_set():
                    outcome.interrupted = True
                    break
                indexes, futures = queued.popleft()
                prefetch()
                prepared = [f.result() for f in futures]
                if stop.is_set():
                    outcome.interrupted = True
                    break
                ready: list[tuple[int, Prepared]] = []
                errors: list[tuple[int, ImageEntry]] = []
                for i, prep in zip(indexes, prepared):
                    if prep.error is None:
                        ready.append((i, prep))
                        continue
                    errors.append((i, error_entry(i, inputs[i], prep.error, prep)))
                    if s.fail_fast:  # images after the first failure are not processed
                        outcome.stopped_early = True
                        break
                made, written = self._explain_batch(ready, inputs, outputs, writers) if ready else (list, [])
                failed = bool(errors) or (bool(ready) and not written)
                # one batch in input order: the explained images' entries, then the load errors, merged
                order = sorted(
                    [(i, j, None) for j, (i, _) in enumerate(ready)] + [(i, -1, e) for i, e in errors],
                    key=lambda row: row[0],
                )
                futures_in_order = [written[j] if written and j >= 0 else None for _, j, _ in order]

                def make(order: list[Any] = order, made: Callable[[], list[ImageEntry]] = made) -> list[ImageEntry]:
                    built = made()
                    return [built[j] if j >= 0 else entry for _, j, entry in order]

                emitter.put(make, futures_in_order)
                if s.fail_fast and (failed or outcome.failed):
                    outcome.stopped_early = True
                    break
            emitter.finish()
        finally:
            for _, futures in queued:
                for f in futures:
                    f.cancel()
            loaders.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True)  # never leave a half-written file behind
            try:
                emitter.finish()
            except Exception:  # noqa: BLE001 - already failing; keep the first error
                pass
        return outcome

    def _explain_batch(
        self,
        ready: list[tuple[int, Prepared]],
        inputs: Sequence[ImageInput],
        outputs: Sequence[OutputPaths],
        writers: ThreadPoolExecutor,
    ) -> tuple[Callable[[], list[ImageEntry]], list[Future[Written]]]:
        """Explain one batch and submit its writes; returns a function that builds the batch's
        entries (run by the emitting thread) and the write futures, both in ``ready``'s order.
        If the explanation fails, every image gets an error entry and there are no futures."""
        explained = self.explain(ready, inputs)
        if isinstance(explained, str):
            return (lambda: [error_entry(i, inputs[i], explained, prep) for i, prep in ready]), []
        drawings, make = explained
        written = [
            writers.submit(self.write, drawing, prep, inputs[i], outputs[i])
            for drawing, (i, prep) in zip(drawings, ready)
        ]
        return make, written

    def explain(
        self, ready: list[tuple[int, Prepared]], inputs: Sequence[ImageInput] | Mapping[int, ImageInput]
    ) -> tuple[list[Drawing], Callable[[], list[ImageEntry]]] | str:
        """Explain one batch of loaded images: what to draw for each, in ``ready``'s order, and a
        function that builds their entries (without what writing adds); or, when the
        explanation fails, the error message for all of them."""
        s = self.settings
        plan = s.targets
        keys = [inputs[i].path.as_posix() for i, _ in ready]
        start = time.perf_counter()
        try:
            batch = torch.stack([p.tensor for _, p in ready]).to(self.device)  # type: ignore[misc]
            contrast = None if plan.contrast is None else (lambda logits: plan.contrast_column(logits, keys))
            exps = self.explainer.each(
                batch, lambda logits: plan.columns(logits, keys), contrast=contrast, layers=s.layers
            )
            logits = exps[0].logits.detach().to("cpu", torch.float64)
            maps = [_MapOut.of(exp) for exp in exps]
            del exps
            compared = []
            first = maps[0]
            for name, other in self.comparisons:  # the same images and classes, other rules
                against = None if first.contrasts is None else torch.tensor(first.contrasts, device=batch.device)
                exp = other(batch, torch.tensor(first.targets, device=batch.device), contrast=against)
                compared.append((name, exp.relevance.detach().to("cpu", torch.float32), exp.ledger.accounts()))
                del exp
            del batch
        except Exception as exc:  # noqa: BLE001 - report it for these images and go on
            return f"explanation failed ({type(exc).__name__}: {exc})"
        explain_s = (time.perf_counter() - start) / len(ready)
        drawings = []
        shares = first.ledger.pixel_share().tolist() if compared else []
        for j in range(len(ready)):
            comparisons = [
                Comparison(name, rel[j].numpy(), acc.pixel_share[j] if acc.pixel_share else None)
                for name, rel, acc in compared
            ]
            if comparisons:
                comparisons.insert(0, Comparison(self.main_name, first.relevance[j].numpy(), shares[j]))
            each = [Drawing(m.relevance[j].numpy(), self._map_label(m, j), [], m.layer_arrays(j)) for m in maps]
            drawings.append(replace(each[0], comparisons=comparisons, more=each[1:]))
        # whole-batch tensor work stays on this thread (torch in another thread starts an OpenMP
        # team of its own); the per-image Python work is left to the emitting thread
        probs = torch.softmax(logits, dim=1)
        top_p, top_i = probs.topk(min(max(1, s.top_k), probs.shape[1]), dim=1)
        stats = _BatchStats(
            top_p=top_p.tolist(),
            top_i=top_i.tolist(),
            top_logit=logits.gather(1, top_i).tolist(),
            maps=[m.stats(probs, logits) for m in maps],
            explain_s=explain_s,
            compared=[(name, acc) for name, _, acc in compared],
        )
        return drawings, (lambda: self._entries(ready, inputs, stats))

    def _entries(
        self, ready: list[tuple[int, Prepared]], inputs: Sequence[ImageInput] | Mapping[int, ImageInput], b: _BatchStats
    ) -> list[ImageEntry]:
        """The report entries of one explained batch (without what the writes add)."""
        entries = []
        for j, (i, prep) in enumerate(ready):
            item = inputs[i]
            results = [self._result(b, m, k, j, prep) for k, m in enumerate(b.maps)]
            result = results[0]
            if len(results) > 1:
                result.more = [r.map_dict() for r in results[1:]]
            warnings = list(prep.warnings)
            for r in results:
                if r.contrast is not None and r.contrast.index == r.target.index:
                    warnings.append(
                        f"target and contrast are the same class ({r.target.label}): f_target − f_contrast "
                        "is 0 and the map is empty"
                    )
            entries.append(
                ImageEntry(
                    index=i,
                    input=item.path.as_posix(),
                    rel=item.rel.as_posix(),
                    warnings=warnings,
                    timing={"load_s": prep.load_s, "explain_s": b.explain_s},
                    result=result,
                )
            )
        return entries

    def _result(self, b: _BatchStats, m: _MapStats, k: int, j: int, prep: Prepared) -> Result:
        """Image ``j``'s result for map ``k`` (its comparisons only for the first map)."""
        s = self.settings
        picks = s.targets.picks
        target = int(m.targets[j])
        led = m.accounts.image(j, steps=s.ledger_steps)
        contrast = None
        if m.contrasts is not None and s.targets.contrast is not None:
            c = int(m.contrasts[j])
            contrast = Target(c, self._label(c), s.targets.contrast.source(), m.contrast_p[j], m.contrast_logit[j])
        top = b.top_i[j][0]
        return Result(
            image={"width": prep.size[0], "height": prep.size[1]} if prep.size else None,
            top_k=[
                Prediction(int(c), self._label(int(c)), p, logit)
                for p, c, logit in zip(b.top_p[j], b.top_i[j], b.top_logit[j])
            ],
            predicted=Prediction(int(top), self._label(int(top)), b.top_p[j][0], b.top_logit[j][0]),
            target=Target(target, self._label(target), picks[k].source(), m.target_p[j], m.target_logit[j]),
            contrast=contrast,
            f_x=led["f_x"],
            relevance={"sum": led["sum_pixels"], "positive": m.positive[j], "negative": m.negative[j]},
            conservation=conservation_shares(led, m.conservation[j]),
            ledger=led,
            compare=[
                {
                    "composite": name,
                    "pixel_share": acc.pixel_share[j] if acc.pixel_share else None,
                    "relative_closure_error": acc.relative_closure_error[j],
                }
                for name, acc in b.compared
            ]
            if k == 0 and b.compared
            else None,
            precision=m.redone[j] if j < len(m.redone) else None,
            layers=[layer_summary(name, rel[j].numpy(), led["f_x"], s.top_k) for name, rel in m.layers.items()]
            or None,
        )

    def _map_label(self, m: _MapOut, j: int) -> str:
        """The picture's label: the class, or ``A rather than B`` for a contrast."""
        label = self._label(int(m.targets[j]))
        return label if m.contrasts is None else f"{label} rather than {self._label(int(m.contrasts[j]))}"

    def _label(self, index: int) -> str:
        if 0 <= index < len(self.categories):
            return self.categories[index]
        return f"class {index}"
