"""lrpcli.audit.spray: the neighbour graph, the Laplacian's spectrum, the eigengap and SpRAy itself
on maps with a known number of strategies."""

from __future__ import annotations

import numpy as np
import pytest

from lrpcli.audit.spray import eigengap, kmeans, knn_graph, laplacian_spectrum, spray


def maps(n: int, marked: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` normalised 16 x 16 maps of noise; the first ``marked`` share has a strong top-left blob."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(0, 1, (n, 16, 16)), 0)
    truth = np.arange(n) < round(n * marked)
    x[truth, :3, :3] += 15.0
    x /= x.sum(axis=(1, 2), keepdims=True)
    return x.reshape(n, -1).astype(np.float32), truth


def test_knn_graph_is_symmetric_with_k_neighbours() -> None:
    x, _ = maps(50, 0.3)
    graph = knn_graph(x, 5, block=7)  # several blocks
    dense = graph.toarray()
    assert (dense == dense.T).all() and not dense.diagonal().any()
    assert (dense.sum(axis=1) >= 5).all()
    brute = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(brute, np.inf)
    for i in range(50):
        assert dense[i, np.argsort(brute[i])[:5]].all()


def test_two_components_give_two_zero_eigenvalues_and_gap_two() -> None:
    x, _ = maps(60, 0.4)
    values, vectors = laplacian_spectrum(knn_graph(x, 5), 6)
    assert values[0] == pytest.approx(0, abs=1e-8) and np.all(np.diff(values) >= -1e-9)
    assert vectors.shape == (60, 6)
    assert eigengap(values, 5) == 2
    assert eigengap(np.array([0.0, 0.9, 0.95, 1.0]), 3) == 1
    assert eigengap(np.array([0.0]), 3) == 1


@pytest.mark.parametrize("n", [40, 200, 2000])
def test_spray_finds_the_planted_strategy(n: int) -> None:
    x, truth = maps(n, 0.3, seed=n)
    found = spray(x, seed=0)
    assert found.suggested == 2 and found.clusters == 2
    assert np.bincount(found.labels).tolist() == [n - truth.sum(), truth.sum()]  # largest first
    assert (found.labels == 1).tolist() == truth.tolist()
    again = spray(x, seed=0)
    assert (again.labels == found.labels).all()


def test_spray_with_a_forced_number_of_clusters() -> None:
    x, _ = maps(60, 0.3)
    found = spray(x, clusters=3, seed=1)
    assert found.clusters == 3 and found.suggested == 2 and set(found.labels.tolist()) == {0, 1, 2}
    assert spray(x, clusters=1).labels.tolist() == [0] * 60
    with pytest.raises(ValueError, match="at least 3"):
        spray(x[:2])


def test_kmeans_separates_obvious_groups() -> None:
    points = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    labels, centres = kmeans(points, 2, seed=3)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert centres.shape == (2, 2)
