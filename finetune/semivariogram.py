"""Semivariogram negatives for GeoCLIP-style training (Chen et al., "Enhancing Contrastive Learning for
Geolocalization by Discovering Hard Negatives on Semivariograms", 2025).

How different two photos look grows with how far apart they were taken, up to a plateau. The empirical
semivariogram measures that on training pairs: for unit-length embeddings the semivariance of a pair,
half their squared distance, is their cosine distance, averaged per bin of great-circle distance. A
standard model (exponential or spherical, with nugget, sill and range) fitted to the bins says how
different two photos *should* look at any distance. Against that expectation, each negative of the
contrastive loss (image i against the place of photo j) is

- a **false negative** when the two places are closer than the distance at which the fitted model rises
  to ``false_negative_fraction`` of its way from nugget to sill, and the photos look no more different than
  expected there: practically the same place, so it is dropped;
- a **hard negative** when the photos look more alike than expected at their distance: it is weighted up,
  by up to e^``hard_strength``, in proportion to the standardised shortfall;
- otherwise an ordinary negative (weight 1).

Weights enter the loss as log-weights added to the negatives' logits (a weighted softmax denominator).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gaea.errors import BadInputError, ConfigError
from gaea.geo.distance import EARTH_RADIUS_KM, haversine_km, unit_vectors
from gaea.io import atomic_write_bytes, atomic_write_json

MODELS = ("exponential", "spherical")
#: Log-spaced lag bins: under 1 km, then up to half the Earth's circumference.
_BIN_EDGES_KM = np.concatenate([[0.0], np.geomspace(1.0, math.pi * EARTH_RADIUS_KM, 40)])


@dataclass(frozen=True)
class Semivariogram:
    """A fitted semivariogram model and the empirical bins it was fitted to."""

    model: str
    nugget: float
    sill: float
    range_km: float
    bin_km: list[float]
    gamma: list[float]
    pairs: list[int]

    def expected(self, distance_km: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """The cosine distance expected between photos ``distance_km`` apart."""
        lib = torch if isinstance(distance_km, torch.Tensor) else np
        h = distance_km / self.range_km
        if self.model == "exponential":
            rise = 1 - lib.exp(-h)
        else:
            h = lib.clip(h, 0, 1)  # the spherical model is flat at the sill beyond its range
            rise = 1.5 * h - 0.5 * h ** 3
        return self.nugget + (self.sill - self.nugget) * rise

    def lag_at(self, fraction: float) -> float:
        """The distance (km) at which the model has risen ``fraction`` of the way from nugget to sill."""
        if self.model == "exponential":
            return -self.range_km * math.log(1 - fraction)
        lo, hi = 0.0, 1.0  # spherical: solve 1.5 h - 0.5 h^3 = fraction on [0, 1] by bisection
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if 1.5 * mid - 0.5 * mid ** 3 < fraction else (lo, mid)
        return lo * self.range_km

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> Semivariogram:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def empirical_semivariogram(embeddings: np.ndarray, coords: np.ndarray, *, pairs: int = 100_000,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binned mean cosine distance against great-circle distance: (bin centre km, gamma, pair count) for
    non-empty bins. Half the pairs are random, half are each photo's spatial neighbours, so that short lags
    (where random pairs almost never fall) are measured too."""
    n = len(embeddings)
    if n < 3:
        raise BadInputError(f"a semivariogram needs at least 3 training photos, got {n}")
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    half = max(pairs // 2, 1)
    first, second = rng.integers(0, n, half), rng.integers(0, n, half)
    points = unit_vectors(coords[:, 0], coords[:, 1])
    anchors = rng.integers(0, n, max(half // 8, 1))
    _, near = cKDTree(points).query(points[anchors], k=min(9, n))
    first = np.concatenate([first, np.repeat(anchors, near.shape[1] - 1)])
    second = np.concatenate([second, near[:, 1:].ravel()])
    keep = first != second
    first, second = first[keep], second[keep]
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    visual = 1.0 - np.einsum("ij,ij->i", unit[first], unit[second])
    geographic = haversine_km(coords[first, 0], coords[first, 1], coords[second, 0], coords[second, 1])
    which = np.clip(np.searchsorted(_BIN_EDGES_KM, geographic, side="right") - 1, 0, len(_BIN_EDGES_KM) - 2)
    counts = np.bincount(which, minlength=len(_BIN_EDGES_KM) - 1)
    sums = np.bincount(which, weights=visual, minlength=len(_BIN_EDGES_KM) - 1)
    centres = np.concatenate([[0.5], np.sqrt(_BIN_EDGES_KM[1:-1] * _BIN_EDGES_KM[2:])])
    filled = counts > 0
    return centres[filled], sums[filled] / counts[filled], counts[filled]


def fit_semivariogram(embeddings: np.ndarray, coords: np.ndarray, *, model: str = "exponential",
                      pairs: int = 100_000, seed: int = 0) -> Semivariogram:
    """The empirical semivariogram of the training pairs with ``model`` fitted to it (least squares,
    bins weighted by their pair counts)."""
    from scipy.optimize import curve_fit

    if model not in MODELS:
        raise ConfigError(f"semivariogram model {model!r}: choose {' or '.join(MODELS)}")
    lags, gamma, counts = empirical_semivariogram(np.asarray(embeddings, dtype=np.float64), coords, pairs=pairs,
                                                  seed=seed)

    def curve(h: np.ndarray, nugget: float, rise: float, range_km: float) -> np.ndarray:
        return Semivariogram(model, nugget, nugget + rise, range_km, [], [], []).expected(h)

    start = [float(gamma[0]), float(max(gamma.max() - gamma[0], 1e-3)), float(np.median(lags))]
    bounds = ([0.0, 0.0, 1e-3], [2.0, 2.0, 4 * math.pi * EARTH_RADIUS_KM])
    (nugget, rise, range_km), _ = curve_fit(curve, lags, gamma, p0=start, bounds=bounds,
                                            sigma=1 / np.sqrt(counts), maxfev=20_000)
    return Semivariogram(model, float(nugget), float(nugget + rise), float(range_km), lags.tolist(), gamma.tolist(),
                         counts.astype(int).tolist())


def negative_log_weights(semivariogram: Semivariogram, distance_km: torch.Tensor, visual: torch.Tensor, *,
                         hard_strength: float = 1.0, false_negative_fraction: float = 0.05) -> torch.Tensor:
    """Log-weights of negatives (see the module docstring) for their great-circle and cosine distances;
    -inf drops a false negative."""
    expected = semivariogram.expected(distance_km)
    spread = max(semivariogram.sill - semivariogram.nugget, 1e-6)
    shortfall = ((expected - visual) / spread).clamp(min=0.0, max=1.0)
    weights = hard_strength * shortfall
    same_place = (distance_km < semivariogram.lag_at(false_negative_fraction)) & (visual <= expected)
    return weights.masked_fill(same_place, float("-inf"))


def plot_semivariogram(semivariogram: Semivariogram, path: str | Path, *, title: str = "") -> Path:
    """A PNG of the empirical bins and the fitted model (log distance axis)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    lags = np.asarray(semivariogram.bin_km)
    sizes = 8 + 40 * np.sqrt(np.asarray(semivariogram.pairs) / max(semivariogram.pairs))
    axes.scatter(lags, semivariogram.gamma, s=sizes, color="#1f77b4", alpha=0.8, label="empirical (pairs per bin)")
    smooth = np.geomspace(max(lags.min(), 0.1), lags.max(), 400)
    axes.plot(smooth, semivariogram.expected(smooth), color="#d62728",
              label=f"{semivariogram.model}: nugget {semivariogram.nugget:.3f}, sill {semivariogram.sill:.3f}, "
                    f"range {semivariogram.range_km:,.0f} km")
    axes.set_xscale("log")
    axes.set_xlabel("great-circle distance between the photos (km)")
    axes.set_ylabel("semivariance: mean cosine distance")
    axes.set_title(title or "Semivariogram of the training embeddings")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
