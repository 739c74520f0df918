"""Location models: image embeddings in, candidate places on the sphere out.

One interface, ``LocationModel.predict(embeddings, k) -> candidates`` (lat, lon, score, best first), three
kinds:

- ``geoclip`` (`gaea.location.geoclip`): GeoCLIP's image / GPS contrastive alignment, predicting over a
  GPS gallery; trained with plain or semivariogram-weighted negatives;
- ``s2`` (`gaea.location.s2`): GeoToken's coarse-to-fine S2 cell tokens with greedy, beam or multi-sample
  decoding;
- ``shdd`` (`gaea.location.shdd`): LocDiff's spherical-harmonics Dirac delta coefficients, by conditional
  diffusion or direct regression, decoded by mode-seeking.

Models are saved as ``model.safetensors`` + ``config.json`` and opened with `load_location_model`;
`gaea locmodel train` / `eval` train and evaluate them on galleries made by `gaea gallery build`.
"""

from gaea.location.base import LocationModel, load_location_model, model_class_for
from gaea.location.evaluate import evaluate_predictions
from gaea.location.geoclip import GeoCLIPModel, read_gps_gallery
from gaea.location.s2 import S2Model
from gaea.location.shdd import SHDDModel, SphericalHarmonics

KINDS = ("geoclip", "s2", "shdd")

__all__ = [
    "KINDS",
    "GeoCLIPModel",
    "LocationModel",
    "S2Model",
    "SHDDModel",
    "SphericalHarmonics",
    "evaluate_predictions",
    "load_location_model",
    "model_class_for",
    "read_gps_gallery",
]
