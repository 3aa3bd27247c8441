"""Spectral Relevance Analysis (SpRAy; Lapuschkin et al. 2019, "Unmasking Clever Hans predictors
and assessing what machines really learn") on one class's downsized heatmaps, with NumPy and SciPy.

1. A k-nearest-neighbour graph of the maps (Euclidean distance, computed in blocks so memory is
   ``block x n``), made symmetric: two maps are linked when either is among the other's nearest.
2. The symmetric normalised Laplacian ``L = I - D^-1/2 W D^-1/2``: its smallest eigenvalues and
   eigenvectors (dense for small graphs, ARPACK for large ones).
3. The eigengap: the number of strategies ``k`` is where the gap ``λ_k - λ_(k-1)`` between
   consecutive eigenvalues is largest (k connected groups give k eigenvalues near 0).
4. k-means (several seeded restarts) on the rows of the first ``k`` eigenvectors, each scaled to
   unit length (Ng, Jordan and Weiss): the clusters, numbered by size, largest first.

SciPy is imported inside the functions (the ``audit`` extra), so importing this module is cheap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_NEIGHBOURS", "Spray", "eigengap", "kmeans", "knn_graph", "laplacian_spectrum", "spray"]

DEFAULT_NEIGHBOURS = 10
_DENSE_LIMIT = 1500  # up to this many maps the Laplacian's spectrum is computed densely
_RESTARTS = 10


@dataclass(frozen=True)
class Spray:
    """SpRAy's result for one class.

    ``eigenvalues``: the smallest eigenvalues of the normalised Laplacian, ascending;
    ``suggested``: the number of clusters the eigengap suggests; ``labels``: each map's cluster
    (0 is the largest).
    """

    labels: np.ndarray
    eigenvalues: np.ndarray
    suggested: int
    clusters: int
    neighbours: int


def knn_graph(features: np.ndarray, neighbours: int, *, block: int = 1024) -> Any:
    """The symmetric k-nearest-neighbour graph of the rows of ``features`` (a SciPy CSR matrix of
    ones: ``i`` and ``j`` are linked when either is among the other's ``neighbours`` nearest)."""
    from scipy import sparse

    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    k = min(neighbours, n - 1)
    if k < 1:
        raise ValueError(f"a graph needs at least 2 maps, got {n}")
    norms = np.einsum("ij,ij->i", x, x)
    cols = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        dist = norms[start:stop, None] - 2.0 * (x[start:stop] @ x.T) + norms[None, :]
        dist[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        cols[start:stop] = nearest
    rows = np.repeat(np.arange(n), k)
    graph = sparse.csr_matrix((np.ones(n * k, dtype=np.float64), (rows, cols.ravel())), shape=(n, n))
    graph = graph.maximum(graph.T)
    return graph.tocsr()


def laplacian_spectrum(graph: Any, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues (ascending) of the graph's symmetric normalised Laplacian,
    and their eigenvectors as columns (``n x count``)."""
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    n = graph.shape[0]
    count = min(count, n)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    scale = sparse.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    affinity = (scale @ graph @ scale).tocsr()  # D^-1/2 W D^-1/2: its largest = L's smallest
    if n <= _DENSE_LIMIT or count >= n - 1:
        values, vectors = np.linalg.eigh(affinity.toarray())
        order = np.argsort(values)[::-1][:count]
    else:
        start = np.random.default_rng(seed).uniform(0.5, 1.5, n)
        values, vectors = eigsh(affinity, k=count, which="LA", v0=start, tol=1e-8)
        order = np.argsort(values)[::-1]
    return np.clip(1.0 - values[order], 0.0, 2.0), vectors[:, order]


def eigengap(eigenvalues: np.ndarray, max_clusters: int) -> int:
    """The number of clusters ``k`` (1 to ``max_clusters``) after which the gap between consecutive
    Laplacian eigenvalues ``λ_k - λ_(k-1)`` is largest."""
    values = np.asarray(eigenvalues, dtype=np.float64)
    top = min(max_clusters, len(values) - 1)
    if top < 1:
        return 1
    gaps = np.diff(values[: top + 1])
    return int(np.argmax(gaps)) + 1


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, restarts: int = _RESTARTS) -> tuple[np.ndarray, np.ndarray]:
    """Labels and centres of the best (least squared distance) of ``restarts`` seeded k-means++ runs."""
    from scipy.cluster.vq import kmeans2

    data = np.asarray(points, dtype=np.float64)
    if k <= 1:
        return np.zeros(len(data), dtype=np.int64), data.mean(axis=0, keepdims=True)
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(restarts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "one of the clusters is empty": that run is dropped
            centres, labels = kmeans2(data, k, iter=50, minit="++", seed=rng)
        if len(np.unique(labels)) < k:
            continue
        inertia = float(((data - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0] - 1e-12:
            best = (inertia, labels, centres)
    if best is None:
        raise ValueError(f"k-means found no {k} non-empty clusters; ask for fewer clusters")
    return best[1].astype(np.int64), best[2]


def spray(
    features: np.ndarray,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    clusters: int | None = None,
    max_clusters: int = 8,
    seed: int = 0,
) -> Spray:
    """SpRAy on the rows of ``features`` (one normalised, downsized map per row): ``clusters``
    clusters, or as many as the eigengap suggests (at most ``max_clusters``)."""
    n = len(features)
    if n < 3:
        raise ValueError(f"SpRAy needs at least 3 maps, got {n}")
    k_nn = min(neighbours, n - 1)
    graph = knn_graph(features, k_nn)
    wanted = max(max_clusters, clusters or 1) + 1
    values, vectors = laplacian_spectrum(graph, min(wanted, n), seed=seed)
    suggested = eigengap(values, max_clusters)
    k = min(clusters if clusters is not None else suggested, n)
    embedding = vectors[:, :k]
    lengths = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = embedding / np.maximum(lengths, 1e-12)
    labels, _ = kmeans(embedding, k, seed=seed)
    sizes = np.bincount(labels, minlength=k)
    order = sorted(range(k), key=lambda c: (-sizes[c], int(np.flatnonzero(labels == c)[0])))
    renumber = np.empty(k, dtype=np.int64)
    renumber[order] = np.arange(k)
    return Spray(
        labels=renumber[labels],
        eigenvalues=values,
        suggested=suggested,
        clusters=k,
        neighbours=k_nn,
    )
