"""LocDiff's Spherical Harmonics Dirac Delta (SHDD) representation of places, and the models on it.

A point p on the sphere is encoded as the real spherical-harmonics coefficients of a Dirac delta at p up to
degree L: c_lm = Y_lm(p), (L+1)^2 numbers. Any coefficient vector is a function on the sphere,
f(q) = sum c_lm Y_lm(q); it is decoded by mode-seeking: f is evaluated on a latitude-longitude grid, its
local maxima are the candidate places (the k highest, kept apart by a minimum distance), and each is
refined by parabolic interpolation on ever finer 3 x 3 stencils. For the delta of a point, the truncated
expansion peaks exactly at the point, so encoding then decoding returns it.

The associated Legendre part of Y_lm comes from `scipy.special.sph_legendre_p_all` (orthonormal, with the
Condon-Shortley phase); the real harmonics are Ybar_l^|m|(theta) times 1, sqrt(2) cos(m phi) (m > 0) or
sqrt(2) sin(|m| phi) (m < 0), an orthonormal basis. On a grid the sum separates into a sum over l per
order m, then a sum over m per longitude, which keeps decoding cheap even at L = 50.

Models (``variant``), each mapping a frozen image embedding to SHDD coefficients:

- ``regression`` (the baseline, and the default): an MLP that outputs the coefficients directly, trained
  with `SphericalHarmonics.kl_loss`, the KL divergence from the true point's delta to the distribution
  proportional to exp(f) of the prediction;
- ``diffusion`` (LocDiff): a conditional denoising diffusion in coefficient space (cosine schedule, 1,000
  steps), whose small residual-MLP denoiser predicts the clean coefficients from noisy ones, the diffusion
  time and the image, around a jointly trained regression prior; DDIM sampling from noise; the mean of
  ``samples`` draws (a mixture of their functions) is decoded. A draw is one plausible place, so as a point
  estimate it trails the regression's mode unless the denoiser is trained long; ``start`` < 1 runs only the
  end of the reverse process from the noised prior, which refines it instead.

Training is in `finetune.location`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special
from torch import nn

from gaea.errors import ConfigError
from gaea.geo.distance import haversine_km
from gaea.location.base import LocationModel

SHDD_DEFAULTS: dict[str, Any] = {
    "degree": 48,
    "variant": "regression",
    "hidden": 512,
    "layers": 3,
    "timesteps": 1000,
    "mse_weight": 0.0,      # weight of a coefficient MSE added to the regression's KL
}

VARIANTS = ("diffusion", "regression")


class SphericalHarmonics:
    """Real orthonormal spherical harmonics up to ``degree``, packed l-major (m from -l to l)."""

    def __init__(self, degree: int):
        if not 1 <= degree <= 100:
            raise ConfigError(f"SHDD degree must be between 1 and 100, got {degree}")
        self.degree = degree
        self.size = (degree + 1) ** 2
        self.l_of = np.concatenate([np.full(2 * ell + 1, ell) for ell in range(degree + 1)])
        self.m_of = np.concatenate([np.arange(-ell, ell + 1) for ell in range(degree + 1)])
        #: The peak value of a point's truncated delta, sum over l of (2l + 1) / (4 pi).
        self.delta_peak = self.size / (4 * math.pi)
        #: Where modes are sought (then refined off the grid): half the resolution, 180 / L degrees, apart.
        self.search_grid = LatLonGrid(self, 90.0 / (degree + 1))
        #: Where the normaliser of exp(f) is integrated: at half the resolution too (a coarser grid lets a
        #: training model hide sharp peaks between its nodes and so underestimate the normaliser).
        self.quadrature_grid = self.search_grid

    # -- the basis ----------------------------------------------------------------------------------

    def legendre(self, lat: np.ndarray) -> np.ndarray:
        """(n x size): Ybar_l^|m| at the latitudes (degrees) for every packed (l, m)."""
        colatitude = np.radians(90.0 - np.asarray(lat, dtype=np.float64))
        values = special.sph_legendre_p_all(self.degree, self.degree, colatitude)[0]  # (L+1) x (2L+1) x n
        return values[self.l_of, np.abs(self.m_of)].T

    def trig(self, lon: np.ndarray) -> np.ndarray:
        """(n x size): the longitude factor of every packed (l, m) at the longitudes (degrees)."""
        return self.order_trig(lon)[:, self.m_of + self.degree]

    def order_trig(self, lon: np.ndarray) -> np.ndarray:
        """(n x 2L+1): the longitude factor of each order m = -L..L: sqrt(2) sin(|m| phi), 1, sqrt(2) cos(m phi)."""
        phi = np.radians(np.asarray(lon, dtype=np.float64))[:, None]
        m = np.arange(1, self.degree + 1)[None, :]
        return np.concatenate([math.sqrt(2) * np.sin(m[:, ::-1] * phi), np.ones_like(phi),
                               math.sqrt(2) * np.cos(m * phi)], axis=1)

    def encode(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """SHDD coefficients of points: (n x size) float32, Y_lm at each point."""
        return (self.legendre(lat) * self.trig(lon)).astype(np.float32)

    def evaluate(self, coefficients: torch.Tensor, lat: np.ndarray, lon: np.ndarray) -> torch.Tensor:
        """f at per-row stencils: ``lat`` (n x a) and ``lon`` (n x b) degrees -> (n x a x b) values."""
        n, a = lat.shape
        legendre = torch.from_numpy(self.legendre(lat.ravel())).float().view(n, a, -1)
        trig = torch.from_numpy(self.trig(lon.ravel())).float().view(n, lon.shape[1], -1)
        return torch.einsum("nk,nak,nbk->nab", coefficients.float().cpu(), legendre, trig)

    def on_grid(self, coefficients: torch.Tensor) -> torch.Tensor:
        """f on the mode-search grid: (b x size) -> (b x lat x lon)."""
        return self.search_grid.values(coefficients)

    # -- decoding -----------------------------------------------------------------------------------

    def modes(self, coefficients: torch.Tensor, k: int, *, min_separation_km: float | None = None,
              refinements: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``k`` highest local maxima of each row's function, at least ``min_separation_km`` apart
        (default: a quarter of the resolution, 180 / L degrees), refined: (b x k) lat, lon and value
        relative to a perfect delta's peak (NaN where a row has fewer maxima)."""
        separation = min_separation_km if min_separation_km is not None else 0.25 * 180.0 / self.degree * 111.2
        grid = self.on_grid(coefficients).cpu()
        lat, lon, _ = _grid_maxima(grid, self.search_grid.lat, self.search_grid.lon, k, separation)
        valid = ~np.isnan(lat)
        refined_lat, refined_lon, value = (np.full(lat.shape, np.nan) for _ in range(3))
        if valid.any():
            flat = np.argwhere(valid)  # (row, slot) pairs in the order of lat[valid]
            points = self.refine(coefficients[flat[:, 0]].cpu(), lat[valid], lon[valid], refinements=refinements)
            refined_lat[valid], refined_lon[valid], value[valid] = points
        return refined_lat, refined_lon, value / self.delta_peak

    def refine(self, coefficients: torch.Tensor, lat: np.ndarray, lon: np.ndarray, *,
               refinements: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Climb each row's function from (lat, lon) by parabolic steps on 3 x 3 stencils whose spacing
        shrinks threefold each round; returns the refined points and their values."""
        lat, lon = lat.astype(np.float64).copy(), lon.astype(np.float64).copy()
        offsets = np.array([-1.0, 0.0, 1.0])
        step = self.search_grid.step_deg
        for _ in range(refinements):
            lon_step = step / np.maximum(np.cos(np.radians(lat)), 1e-3)
            stencil = self.evaluate(coefficients, lat[:, None] + step * offsets,
                                    lon[:, None] + lon_step[:, None] * offsets)
            values = stencil.numpy().astype(np.float64)
            lat = np.clip(lat + step * _parabola_vertex(values[:, :, 1]), -90.0, 90.0)
            lon = _wrap(lon + lon_step * _parabola_vertex(values[:, 1, :]))
            step /= 3.0
        final = self.evaluate(coefficients, lat[:, None], lon[:, None])[:, 0, 0].numpy()
        return lat, lon, final.astype(np.float64)

    def kl_loss(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean SHDD-KL: the KL divergence, up to a constant, from the Dirac delta at each true point to the
        distribution q proportional to exp(f) of the predicted coefficients, i.e. -f(p) + log of the integral
        of exp(f) over the sphere. ``target`` holds the points' SHDD coefficients, so f(p) is exactly their
        inner product with ``predicted``; the integral is a quadrature on a grid at half the resolution.

        Exact at the point (no grid stands between the target and the loss), and free in scale: a sharper
        f is a more confident prediction, with the same modes."""
        at_point = (predicted * target).sum(dim=-1)
        grid = self.quadrature_grid
        log_normaliser = (grid.values(predicted).flatten(1) + grid.log_area.to(predicted.device)).logsumexp(dim=-1)
        return (log_normaliser - at_point).mean()

    def on_delta_sphere(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Rows rescaled to the norm every point's delta has, sqrt(sum (2l + 1) / (4 pi))."""
        return F.normalize(coefficients, dim=-1) * math.sqrt(self.delta_peak)


class LatLonGrid:
    """Cell centres of a latitude-longitude grid and what synthesising f on it needs.

    The sum over (l, m) separates: for each order m a matrix product sums over l at every grid latitude,
    then one more sums over m at every longitude."""

    def __init__(self, harmonics: SphericalHarmonics, step_deg: float):
        degree = harmonics.degree
        self.step_deg = step_deg
        self.lat = np.arange(-90 + step_deg / 2, 90, step_deg)
        self.lon = np.arange(-180 + step_deg / 2, 180, step_deg)
        self._l_index = torch.from_numpy(harmonics.l_of)
        self._m_index = torch.from_numpy(harmonics.m_of + degree)
        self._degree = degree
        by_order = np.zeros((2 * degree + 1, degree + 1, len(self.lat)))
        by_order[harmonics.m_of + degree, harmonics.l_of] = harmonics.legendre(self.lat).T
        self._legendre = torch.from_numpy(by_order).float()                  # (2L+1) x (L+1) x lat
        self._trig = torch.from_numpy(harmonics.order_trig(self.lon)).float()  # lon x (2L+1)
        area = np.repeat(np.cos(np.radians(self.lat))[:, None], len(self.lon), axis=1)
        self.log_area = torch.from_numpy(np.log(area / area.sum())).float().flatten()

    def values(self, coefficients: torch.Tensor) -> torch.Tensor:
        """f at the grid's cells: (b x size) -> (b x lat x lon)."""
        device, dtype = coefficients.device, coefficients.dtype
        dense = torch.zeros(2 * self._degree + 1, len(coefficients), self._degree + 1, device=device, dtype=dtype)
        dense[self._m_index, :, self._l_index] = coefficients.T
        per_order = torch.bmm(dense, self._legendre.to(device, dtype))
        return per_order.permute(1, 2, 0) @ self._trig.to(device, dtype).T


def _grid_maxima(grid: torch.Tensor, lats: np.ndarray, lons: np.ndarray, k: int,
                 separation_km: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` highest local maxima per row of (b x lat x lon) grid values, greedily kept at least
    ``separation_km`` apart (longitude wraps around; the poles' rows have no neighbours beyond them)."""
    across = torch.maximum(torch.maximum(grid.roll(1, dims=2), grid.roll(-1, dims=2)), grid)
    edge = torch.full_like(across[:, :1], float("-inf"))
    below, above = torch.cat([edge, across[:, :-1]], 1), torch.cat([across[:, 1:], edge], 1)
    neighbourhood = torch.maximum(torch.maximum(below, above), across)
    is_max = grid >= neighbourhood
    scores = grid.masked_fill(~is_max, float("-inf")).flatten(1)
    pool = min(scores.shape[1], 8 * k)
    values, index = scores.topk(pool, dim=-1)
    lat = lats[(index // len(lons)).numpy()]
    lon = lons[(index % len(lons)).numpy()]
    values = values.numpy().astype(np.float64)
    out = [np.full((len(grid), k), np.nan) for _ in range(3)]
    alive = np.isfinite(values)
    for slot in range(k):
        best = np.where(alive.any(axis=1), np.argmax(np.where(alive, values, -np.inf), axis=1), -1)
        rows = np.nonzero(best >= 0)[0]
        if len(rows) == 0:
            break
        chosen_lat, chosen_lon = lat[rows, best[rows]], lon[rows, best[rows]]
        out[0][rows, slot], out[1][rows, slot], out[2][rows, slot] = chosen_lat, chosen_lon, values[rows, best[rows]]
        near = haversine_km(lat[rows], lon[rows], chosen_lat[:, None], chosen_lon[:, None]) < separation_km
        alive[rows] &= ~near
    return out[0], out[1], out[2]


def _parabola_vertex(values: np.ndarray) -> np.ndarray:
    """Offset (in stencil steps, within [-1, 1]) of the vertex of the parabola through (-1, 0, 1) -> values
    (n x 3); towards the higher side where the three points are not concave."""
    left, middle, right = values[:, 0], values[:, 1], values[:, 2]
    curvature = left - 2 * middle + right
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(curvature < 0, 0.5 * (left - right) / curvature, np.sign(right - left))
    return np.clip(np.nan_to_num(vertex), -1.0, 1.0)


def _wrap(lon: np.ndarray) -> np.ndarray:
    return (lon + 180.0) % 360.0 - 180.0


# -- the models ---------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.SiLU(),
                                 nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class SHDDModel(LocationModel):
    """Image embedding -> SHDD coefficients -> modes (see the module docstring)."""

    kind = "shdd"
    predict_options = {"samples": 4, "steps": 10, "start": 1.0, "seed": 0, "min_separation_km": None}

    def __init__(self, config: dict[str, Any]):
        super().__init__({**SHDD_DEFAULTS, **config})
        c = self.config
        if c["variant"] not in VARIANTS:
            raise ConfigError(f"shdd model: variant {c['variant']!r}: choose {' or '.join(VARIANTS)}")
        self.harmonics = SphericalHarmonics(int(c["degree"]))
        size, hidden = self.harmonics.size, int(c["hidden"])
        self.condition = nn.Sequential(nn.Linear(self.embedding_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.Sequential(*(ResidualBlock(hidden) for _ in range(int(c["layers"]))))
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, size))
        if c["variant"] == "diffusion":
            self.denoiser_condition = nn.Sequential(nn.Linear(self.embedding_dim, hidden), nn.SiLU(),
                                                    nn.Linear(hidden, hidden))
            self.noisy_in = nn.Linear(size, hidden)
            self.prior_in = nn.Linear(size, hidden)
            self.time_in = nn.Sequential(nn.Linear(64, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.denoiser = nn.Sequential(*(ResidualBlock(hidden) for _ in range(int(c["layers"]))))
            self.correction = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, size))
            nn.init.zeros_(self.correction[1].weight)  # the denoiser starts as the prior
            nn.init.zeros_(self.correction[1].bias)
        steps = torch.arange(int(c["timesteps"]) + 1, dtype=torch.float64) / int(c["timesteps"])
        alpha_bar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        self.register_buffer("alpha_bar", (alpha_bar / alpha_bar[0]).clamp(1e-5, 1.0).float(), persistent=False)

    @property
    def scale(self) -> float:
        """Coefficients are multiplied by sqrt(4 pi) inside the networks: unit variance per coefficient."""
        return math.sqrt(4 * math.pi)

    def encode_points(self, lat: np.ndarray, lon: np.ndarray) -> torch.Tensor:
        """The SHDD coefficients of points, on the model's device."""
        return torch.from_numpy(self.harmonics.encode(lat, lon)).to(self.device)

    def regress(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Coefficients straight from the embeddings: the regression variant's output, and the diffusion
        variant's prior (what its denoiser corrects)."""
        return self.head(self.blocks(self.condition(embeddings))) / self.scale

    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """The diffusion variant's estimate of the clean coefficients from noisy ones at times ``t``
        (integers in [1, timesteps]; ``noisy`` is in the scaled space).

        Preconditioned as in EDM (Karras et al., 2022): sqrt(alpha_bar) * noisy + sqrt(1 - alpha_bar) * F,
        the skip carrying the input where there is little noise, F where there is much. F is the regression
        prior (rescaled to a delta's norm, where clean coefficients live) plus a correction from the noisy
        coefficients, the time and the image: conditioning on the prior lets the denoiser learn in a few
        epochs what a bare one needs many for."""
        prior = self.harmonics.on_delta_sphere(self.regress(embeddings) if prior is None else prior).detach()
        hidden = (self.denoiser_condition(embeddings) + self.noisy_in(noisy) + self.prior_in(prior * self.scale)
                  + self.time_in(_time_features(t, self.config)))
        alpha = self.alpha_bar[t][:, None]
        output = prior * self.scale + self.correction(self.denoiser(hidden))
        return (alpha.sqrt() * noisy + (1 - alpha).sqrt() * output) / self.scale

    def add_noise(self, coefficients: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The forward process: scaled coefficients at diffusion time ``t``."""
        alpha = self.alpha_bar[t][:, None]
        return alpha.sqrt() * coefficients * self.scale + (1 - alpha).sqrt() * noise

    def sample(self, embeddings: torch.Tensor, *, samples: int, steps: int, start: float = 1.0,
               seed: int = 0) -> torch.Tensor:
        """Mean coefficients of ``samples`` deterministic DDIM draws per photo (b x size), over ``steps``.

        ``start`` is the share of the reverse process run: 1.0 starts from pure noise, as LocDiff does
        (draw 0 from the centre of the noise distribution, the others from noise drawn from ``seed``); a
        smaller share starts from the regression prior noised to that time, and refines it."""
        if samples < 1 or steps < 1 or not 0.0 < start <= 1.0:
            raise ConfigError(f"shdd sampling needs samples >= 1, steps >= 1 and 0 < start <= 1, got {samples}, "
                              f"{steps} and {start}")
        generator = torch.Generator(device=embeddings.device).manual_seed(int(seed))
        repeated = embeddings.repeat_interleave(samples, dim=0)
        prior = self.regress(repeated)
        first = max(int(round(start * int(self.config["timesteps"]))), 1)
        noise = torch.randn(len(repeated), self.harmonics.size, generator=generator, device=embeddings.device)
        if start >= 1.0:
            noise[::samples] = 0.0
            x = noise
        else:
            alpha = self.alpha_bar[first]
            x = alpha.sqrt() * self.harmonics.on_delta_sphere(prior) * self.scale + (1 - alpha).sqrt() * noise
        times = np.linspace(first, 1, steps).round().astype(int)
        clean = x
        for index, t in enumerate(times):
            batch_t = torch.full((len(x),), int(t), device=x.device)
            clean = self.denoise(x, batch_t, repeated, prior) * self.scale
            alpha = self.alpha_bar[int(t)]
            predicted_noise = (x - alpha.sqrt() * clean) / (1 - alpha).sqrt()
            previous = self.alpha_bar[int(times[index + 1])] if index + 1 < len(times) else self.alpha_bar[0]
            x = previous.sqrt() * clean + (1 - previous).sqrt() * predicted_noise
        return (clean / self.scale).view(len(embeddings), samples, -1).mean(dim=1)

    def coefficients(self, embeddings: torch.Tensor, *, samples: int, steps: int, start: float,
                     seed: int) -> torch.Tensor:
        """The coefficients a photo's candidates are decoded from."""
        if self.config["variant"] == "regression":
            return self.regress(embeddings)
        return self.sample(embeddings, samples=int(samples), steps=int(steps), start=float(start), seed=int(seed))

    def _predict_batch(self, x: torch.Tensor, k: int, *, samples: int, steps: int, start: float, seed: int,
                       min_separation_km: float | None) -> tuple[Any, Any, Any]:
        coefficients = self.coefficients(x, samples=samples, steps=steps, start=start, seed=seed)
        return self.harmonics.modes(coefficients, k, min_separation_km=min_separation_km)

    def candidate_source(self, options: dict[str, Any]) -> str:
        return f"shdd-{self.config['variant']}"


def _time_features(t: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """Sinusoidal features (64) of diffusion times."""
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(32, device=t.device) / 32)
    angles = (t.float() / int(config["timesteps"]) * 1000.0)[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
