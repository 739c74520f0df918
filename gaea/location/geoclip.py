"""GeoCLIP (Vivanco et al., NeurIPS 2023): image and GPS encoders aligned contrastively; a photo is placed
at the entries of a GPS gallery whose location embedding is most similar to its image embedding.

- image side: an MLP on the frozen image embedding (CLIP's, in the paper);
- location side: the Equal Earth projection of (lat, lon), then random Fourier features at several
  scales (sigma 2^0, 2^4, 2^8 in the paper), each followed by its own MLP, the outputs summed;
- prediction: softmax over the similarities to every entry of the GPS gallery (the training coordinates,
  or any CSV of LAT, LON such as GeoCLIP's 100k MP-16 coordinates), top k.

Training (a symmetric contrastive loss with a learnable temperature and a queue of GPS negatives,
optionally weighted by a semivariogram) lives in `finetune.location`.
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gaea.errors import BadInputError
from gaea.location.base import LocationModel, batched

#: Defaults close to the paper's, sized for CPU as well as GPU.
GEOCLIP_DEFAULTS: dict[str, Any] = {
    "dim": 512,              # width of the shared image / location embedding space
    "image_hidden": 768,     # hidden width of the image MLP
    "sigmas": [1.0, 16.0, 256.0],
    "fourier_features": 256,  # frequencies per scale (each gives a cosine and a sine)
    "location_hidden": 1024,
    "location_layers": 3,     # hidden layers of each scale's MLP
    "gallery_size": 0,        # rows of the GPS gallery buffer (set when the gallery is attached)
}

#: Image rows scored against the whole GPS gallery at once (bounds the similarity matrix's memory).
_SCORING_CHUNK = 256
_LOCATION_CHUNK = 16384


@lru_cache(maxsize=1)
def _equal_earth():
    import pyproj

    projection = pyproj.Proj("+proj=eqearth +R=1")
    half_width = projection(180.0, 0.0)[0]
    return projection, half_width


def equal_earth(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n x 2) Equal Earth coordinates scaled so that x spans [-1, 1] (y spans about [-0.49, 0.49]),
    the input scale GeoCLIP's Fourier features are drawn for."""
    projection, half_width = _equal_earth()
    x, y = projection(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return np.stack([np.asarray(x), np.asarray(y)], axis=-1) / half_width


class FourierScale(nn.Module):
    """One scale of the location encoder: fixed random Fourier features, then an MLP."""

    def __init__(self, sigma: float, features: int, hidden: int, layers: int, dim: int):
        super().__init__()
        self.register_buffer("frequencies", torch.randn(features, 2) * sigma)
        blocks: list[nn.Module] = []
        width = 2 * features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*blocks)

    def forward(self, projected: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * projected @ self.frequencies.T
        return self.mlp(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))


class GeoCLIPModel(LocationModel):
    """GeoCLIP on frozen image embeddings (see the module docstring)."""

    kind = "geoclip"

    def __init__(self, config: dict[str, Any]):
        super().__init__({**GEOCLIP_DEFAULTS, **config})
        c = self.config
        dim = int(c["dim"])
        self.image_mlp = nn.Sequential(nn.Linear(self.embedding_dim, int(c["image_hidden"])), nn.ReLU(),
                                       nn.Linear(int(c["image_hidden"]), dim))
        self.scales = nn.ModuleList(
            FourierScale(float(sigma), int(c["fourier_features"]), int(c["location_hidden"]),
                         int(c["location_layers"]), dim)
            for sigma in c["sigmas"]
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.register_buffer("gallery", torch.zeros(int(c["gallery_size"]), 2))
        self._gallery_features: torch.Tensor | None = None

    # -- the two encoders ---------------------------------------------------------------------------

    def image_features(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Unit-length image-side embeddings (differentiable)."""
        return F.normalize(self.image_mlp(embeddings), dim=-1)

    def location_features(self, latlon: torch.Tensor) -> torch.Tensor:
        """Unit-length location-side embeddings of (n x 2) degrees (differentiable in the weights)."""
        points = latlon.detach().cpu().numpy()
        projected = torch.from_numpy(equal_earth(points[:, 0], points[:, 1])).float().to(self.device)
        return F.normalize(sum(scale(projected) for scale in self.scales), dim=-1)

    def encode_images(self, embeddings: Any) -> np.ndarray:
        """(n x dim) unit vectors for image embeddings: cosine with `encode_locations` says how well a
        place fits a photo (what G3's ranker compares)."""
        x = self.check_embeddings(embeddings)
        with torch.no_grad():
            return self.image_features(x).cpu().numpy()

    def encode_locations(self, lat: Any, lon: Any) -> np.ndarray:
        """(n x dim) unit vectors for places given in degrees."""
        latlon = _checked_points(lat, lon)
        with torch.no_grad():
            return batched(self.location_features, torch.from_numpy(latlon), _LOCATION_CHUNK).cpu().numpy()

    # -- the GPS gallery ----------------------------------------------------------------------------

    def set_gps_gallery(self, lat: Any, lon: Any) -> None:
        """Use these places as the candidates of `predict`."""
        points = torch.from_numpy(_checked_points(lat, lon))
        if len(points) == 0:
            raise BadInputError("the GPS gallery is empty: give at least one (lat, lon)")
        self.gallery = points.to(self.device)
        self.config["gallery_size"] = len(points)
        self._gallery_features = None

    def train(self, mode: bool = True) -> GeoCLIPModel:
        # Weights change only while training: the cached gallery embeddings are stale from then on.
        if mode:
            self._gallery_features = None
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._gallery_features = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def gallery_features(self) -> torch.Tensor:
        if len(self.gallery) == 0:
            raise BadInputError("this geoclip model has no GPS gallery: attach one with set_gps_gallery "
                                "(or --gps-gallery CSV)")
        if self._gallery_features is None:
            self._gallery_features = batched(self.location_features, self.gallery, _LOCATION_CHUNK)
        return self._gallery_features

    def _predict_batch(self, x: torch.Tensor, k: int, **options: Any) -> tuple[Any, Any, Any]:
        locations = self.gallery_features()
        k = min(k, len(locations))
        lats, lons, scores = [], [], []
        for start in range(0, len(x), _SCORING_CHUNK):
            logits = self.logit_scale.exp() * self.image_features(x[start:start + _SCORING_CHUNK]) @ locations.T
            top = torch.topk(logits.softmax(dim=-1), k, dim=-1)
            points = self.gallery[top.indices]
            lats.append(points[..., 0])
            lons.append(points[..., 1])
            scores.append(top.values)
        return (torch.cat(lats).cpu().numpy(), torch.cat(lons).cpu().numpy(), torch.cat(scores).cpu().numpy())


def read_gps_gallery(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of a CSV with LAT and LON columns (any case; also latitude / longitude),
    such as GeoCLIP's ``coordinates_100K.csv``.

    Raises
    ------
    BadInputError
        When the file is missing, lacks the columns, holds a value that is not a coordinate, or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such GPS gallery file (a CSV with LAT, LON columns)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        columns = [_column(header, names, path) for names in (("lat", "latitude"), ("lon", "lng", "longitude"))]
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((float(row[columns[0]]), float(row[columns[1]])))
            except (IndexError, ValueError) as error:
                raise BadInputError(f"{path}:{line}: not a latitude, longitude pair: {row!r}") from error
    if not rows:
        raise BadInputError(f"{path}: the GPS gallery has no rows")
    points = np.asarray(rows)
    _checked_points(points[:, 0], points[:, 1], where=str(path))
    return points[:, 0], points[:, 1]


def _column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise BadInputError(f"{path}: no {' / '.join(names)} column (header: {', '.join(header) or 'empty'})")


def _checked_points(lat: Any, lon: Any, *, where: str = "coordinates") -> np.ndarray:
    lat, lon = np.asarray(lat, dtype=np.float64).ravel(), np.asarray(lon, dtype=np.float64).ravel()
    if lat.shape != lon.shape:
        raise BadInputError(f"{where}: {lat.size} latitudes but {lon.size} longitudes")
    bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        row = int(np.argmax(bad))
        raise BadInputError(f"{where}: ({lat[row]}, {lon[row]}) at row {row} is not a valid latitude, longitude")
    return np.stack([lat, lon], axis=1).astype(np.float32)
