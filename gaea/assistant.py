"""The Assistant: the one entry point that ui/ and eval/ call.

``locate(image)`` asks the model where a photo was taken, with the coordinates and place names of its
most and least similar gallery photos in the prompt when a retriever is set (Img2Loc), or cold when it is
not. With ``ensemble > 1`` it samples several answers over prompts with 0, 5, 10 and 15 references (G3)
and keeps the candidate nearest the geometric median of the candidates and the similar neighbours.

``chat(history, image, message)`` streams answers about the place; questions about the surroundings are
grounded in OpenStreetMap features near the predicted location when an OSM source is set.

Confidence (``Prediction.confidence``, in [0, 1]; None when nothing supports an estimate):

- with neighbours: the similarity-weighted share of the similar neighbours within 750 km (country scale)
  of the predicted point, i.e. how much the gallery agrees with the model;
- with an ensemble: the share of sampled candidates within 750 km of the chosen one;
- both: their mean.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from gaea import prompts
from gaea.errors import BadInputError, ConfigError
from gaea.geo import haversine_km, parse_location
from gaea.images import load_image
from gaea.jsontext import json_values
from gaea.models.backends import Backend
from gaea.ranking import DEDUPE_KM, MedianRanker, gather_candidates, parse_sources
from gaea.ranking.candidates import LMM_SAMPLE
from gaea.types import Candidate, GenerationParams, Message, Neighbor, Prediction

log = logging.getLogger(__name__)

ImageInput = str | Path | Image.Image

#: Distance within which a neighbour or candidate "agrees" with the prediction (country scale, km).
AGREEMENT_KM = 750.0
#: Reference counts of the G3-style ensemble prompts.
ENSEMBLE_REFERENCE_COUNTS = (0, 5, 10, 15)
#: Sampling temperature of ensemble members when the caller asked for greedy decoding (G3 uses 1.2).
ENSEMBLE_TEMPERATURE = 1.2
#: Radius of the OSM features quoted for questions about the surroundings.
GROUNDING_RADIUS_M = 1000.0

_SURROUNDINGS = re.compile(
    r"\b(near(by|est|by\?)?|around|close( by| to)?|closest|surround\w*|vicinity|neighbou?rhood|walk(ing)?|"
    r"distance|how far|within|is there|are there|where can i|any(where)?\s+to|"
    r"station|stop|airport|restaurant|caf[eé]s?|bar|pub|hotel|shop|supermarket|pharmacy|hospital|school|church|"
    r"museum|park|bank|atm|toilet|parking|post office|market|mosque|temple)\b",
    re.IGNORECASE,
)


class Assistant:
    """Geolocation and conversation about photos, on any Backend.

    Parameters
    ----------
    backend
        The model (``gaea.models.backends.load_backend``).
    retriever
        Gallery neighbours for the prompt; None is the no-retrieval mode.
    osm
        OpenStreetMap features for questions about the surroundings; None answers without map data.
    k_similar, k_dissimilar
        Neighbours put in the locate prompt (Img2Loc uses 16 and 16).
    ensemble
        Answers sampled per photo; 1 asks once (greedy unless ``params`` says otherwise).
    params
        Default generation settings.
    location_model
        A `gaea.location.LocationModel` whose top ``k_candidates`` places for the photo go in the locate
        prompt beside the neighbours (and into ``Prediction.candidates``); None leaves them out.
    embedder
        Encodes photos for the location model (default: the retriever's, whose embedding is then shared);
        it must be the encoder the location model was trained on.
    candidate_sources
        Where ranked candidates come from (`gaea.ranking.CANDIDATE_SOURCES`: ``lmm``, ``neighbours``,
        ``location-model``); None is ``("lmm",)`` with an ensemble and no ranking of a single answer.
    ranker
        Picks among the candidates (`gaea.ranking`; default: the geometric median).
    dedupe_km
        Candidates closer than this are merged into one.
    """

    def __init__(self, backend: Backend, retriever=None, osm=None, *, k_similar: int = 16, k_dissimilar: int = 16,
                 ensemble: int = 1, params: GenerationParams | None = None, location_model=None, embedder=None,
                 k_candidates: int = 5, candidate_sources: Sequence[str] | None = None, ranker=None,
                 dedupe_km: float = DEDUPE_KM):
        if k_similar < 0 or k_dissimilar < 0:
            raise BadInputError(f"k_similar and k_dissimilar must be 0 or more, got {k_similar} and {k_dissimilar}")
        if ensemble < 1:
            raise BadInputError(f"ensemble must be at least 1, got {ensemble}")
        if k_candidates < 1:
            raise BadInputError(f"k_candidates must be at least 1, got {k_candidates}")
        self.backend = backend
        self.retriever = retriever
        self.osm = osm
        self.k_similar = k_similar
        self.k_dissimilar = k_dissimilar
        self.ensemble = ensemble
        self.params = params or GenerationParams()
        self.location_model = location_model
        self.embedder = embedder or (retriever.embedder if retriever is not None else None)
        self.k_candidates = k_candidates
        if location_model is not None:
            _check_location_embedder(location_model, self.embedder)
        self.candidate_sources = parse_sources(candidate_sources) if candidate_sources is not None else None
        _check_sources(self.candidate_sources, retriever, location_model)
        self.ranker = ranker or MedianRanker()
        self.dedupe_km = dedupe_km
        self._located: OrderedDict[str, Prediction] = OrderedDict()

    # -- locate -------------------------------------------------------------------------------------

    def locate(self, image: ImageInput) -> Prediction:
        """Where ``image`` was taken. ``lat``/``lon`` are None when the model gave no usable location.

        Raises
        ------
        BadInputError
            When the image file is missing or unreadable.
        """
        pil = _as_pil(image)
        # One forward pass of the encoder serves the neighbours, the location model and the ranker.
        embedding = self.embedder.embed_one(pil) if self.embedder is not None else None
        shared = self.retriever is not None and self.embedder is self.retriever.embedder
        similar, dissimilar = self.neighbours(pil, embedding=embedding if shared else None)
        places = self.location_candidates(pil, embedding=embedding)
        sources = self.candidate_sources or (("lmm",) if self.ensemble > 1 else None)
        if sources is None:  # one answer, nothing to rank
            samples = self._sampled_answers(pil, similar, dissimilar, places)
            prediction = replace(samples[0], candidates=places)
        else:
            samples = self._sampled_answers(pil, similar, dissimilar, places) if "lmm" in sources else []
            pool = gather_candidates(samples, similar if "neighbours" in sources else (),
                                     places if "location-model" in sources else (), radius_km=self.dedupe_km)
            support = similar if "neighbours" not in sources else ()
            ranking = self.ranker.rank(pil, pool, embedding=embedding, support=support)
            prediction = replace(_chosen(ranking, samples), candidates=list(ranking), ranker=ranking.ranker)
        prediction = replace(prediction, similar=list(similar), dissimilar=list(dissimilar))
        prediction.confidence = estimate_confidence(prediction, similar, samples if len(samples) > 1 else [])
        return prediction

    def neighbours(self, image: ImageInput, *,
                   embedding: np.ndarray | None = None) -> tuple[list[Neighbor], list[Neighbor]]:
        """(similar, dissimilar) gallery neighbours of a photo (or of its ``embedding`` by the retriever's
        encoder); empty without a retriever."""
        if self.retriever is None or (self.k_similar == 0 and self.k_dissimilar == 0):
            return [], []
        if embedding is None:
            return self.retriever.neighbours(image, self.k_similar, self.k_dissimilar)
        similar = self.retriever.search(embedding, self.k_similar) if self.k_similar else []
        dissimilar = self.retriever.farthest(embedding, self.k_dissimilar) if self.k_dissimilar else []
        return similar, dissimilar

    def location_candidates(self, image: ImageInput, *, embedding: np.ndarray | None = None) -> list[Candidate]:
        """The location model's ``k_candidates`` most likely places for a photo, best first, each with its
        nearest GeoNames place; empty without a location model."""
        if self.location_model is None:
            return []
        if embedding is None:
            embedding = self.embedder.embed_one(_as_pil(image))
        found = self.location_model.predict(embedding, self.k_candidates)[0]
        if not found:
            return []
        from gaea.geo import reverse_geocode_many

        places = reverse_geocode_many(np.array([c.lat for c in found]), np.array([c.lon for c in found]))
        return [replace(candidate, place=place.label) for candidate, place in zip(found, places, strict=True)]

    def _locate_messages(self, image: Image.Image, prompt: str) -> list[Message]:
        return [Message.system(prompts.chat_system_prompt()), Message.user(prompt, images=[image])]

    def _sampled_answers(self, image: Image.Image, similar: list[Neighbor], dissimilar: list[Neighbor],
                         places: list[Candidate]) -> list[Prediction]:
        """One answer (``ensemble`` 1, with every reference), or G3's: answers sampled over prompts with 0, 5,
        10, 15 references, in turn."""
        if self.ensemble == 1:
            prompt = prompts.locate_prompt(similar, dissimilar, places)
            return [parse_prediction(self.backend.generate(self._locate_messages(image, prompt), params=self.params))]
        temperature = self.params.temperature or ENSEMBLE_TEMPERATURE
        candidates = []
        for member in range(self.ensemble):
            count = ENSEMBLE_REFERENCE_COUNTS[member % len(ENSEMBLE_REFERENCE_COUNTS)]
            prompt = prompts.locate_prompt(similar[:count], dissimilar[:count], places)
            seed = None if self.params.seed is None else self.params.seed + member
            params = replace(self.params, temperature=temperature, seed=seed)
            raw = self.backend.generate(self._locate_messages(image, prompt), params=params)
            candidates.append(parse_prediction(raw))
        return candidates

    # -- chat ---------------------------------------------------------------------------------------

    def chat(self, history: list[Message], image: ImageInput | None, message: str, *,
             params: GenerationParams | None = None) -> Iterator[str]:
        """Stream the answer to ``message`` (text deltas), after the earlier turns in ``history``.

        The photo is kept in context by putting it in the first user turn (``history`` itself is not
        changed). With a retriever, the first turn carries the coordinates and place names of the photo's
        similar and dissimilar gallery neighbours. With an OSM source, a question about the surroundings
        is answered with the map features near the photo's predicted location quoted to the model as data.
        """
        if not message or not message.strip():
            raise BadInputError("the message is empty")
        pil = _as_pil(image) if image is not None else None
        question = message
        if pil is not None and self.osm is not None and asks_about_surroundings(message):
            question = prompts.grounded_question(message, self.grounding(pil))
        elif pil is not None and self.retriever is not None and not history:
            # The conversation opens with the gallery's view of the photo, as `locate` would see it.
            references = prompts.reference_block(*self.neighbours(pil))
            question = prompts.grounded_question(message, references) if references else message
        messages = self._chat_messages(history, pil, question)
        yield from self.backend.stream(messages, params=params or self.params)

    def ask(self, image: ImageInput | None, question: str) -> str:
        """One question about one photo; the whole answer."""
        return "".join(self.chat([], image, question))

    def grounding(self, image: ImageInput) -> str:
        """The OSM block for a photo: features near its predicted location (located once per image)."""
        prediction = self.locate_cached(image)
        if prediction.point is None:
            return ("Map data: the location of the photo could not be estimated, so no map data is available; "
                    "say so if the question needs it.")
        features = self.osm.features(prediction.point, GROUNDING_RADIUS_M)
        return prompts.osm_grounding_block(features, prediction.point, GROUNDING_RADIUS_M, place=prediction.location)

    def locate_cached(self, image: ImageInput) -> Prediction:
        """`locate`, remembered per image (by content) so a conversation locates its photo once."""
        pil = _as_pil(image)
        key = hashlib.sha1(pil.tobytes()).hexdigest() + f"{pil.size}"
        if key not in self._located:
            self._located[key] = self.locate(pil)
            while len(self._located) > 32:
                self._located.popitem(last=False)
        return self._located[key]

    def _chat_messages(self, history: Sequence[Message], image: Image.Image | None, question: str) -> list[Message]:
        turns = [Message(turn.role, list(turn.content)) for turn in history if turn.role != "system"]
        turns.append(Message.user(question))
        if image is not None and not any(turn.images for turn in turns):
            first_user = next(turn for turn in turns if turn.role == "user")
            first_user.content.insert(0, Message.user(images=[image]).content[0])
        return [Message.system(prompts.chat_system_prompt()), *turns]


# -- parsing and aggregating answers ----------------------------------------------------------------


def parse_prediction(raw: str) -> Prediction:
    """A Prediction from a model's answer; lat/lon None (and ``raw`` kept) when it names no usable place.

    Uses `gaea.geo.parse_location`: a JSON object, then coordinates in the prose, then "City, Country"
    geocoded offline. The reasoning is the JSON ``reasoning`` field when there is one, else the answer.
    """
    parsed = parse_location(raw)
    reasoning = _json_field(raw, "reasoning") or raw.strip()
    return Prediction(lat=parsed.lat, lon=parsed.lon, city=parsed.city, country=parsed.country,
                      reasoning=reasoning, raw=raw)


def _chosen(ranking: Sequence[Candidate], samples: Sequence[Prediction]) -> Prediction:
    """The Prediction of the best-ranked candidate: the LMM's own answer when it is one of its samples, else
    the candidate's point with its nearest place's names; the first sample (with no location) when the pool
    is empty."""
    if not ranking:
        return samples[0] if samples else Prediction(raw="no candidate place from any source")
    best = ranking[0]
    for sample in samples:
        if best.source == LMM_SAMPLE and (sample.lat, sample.lon) == (best.lat, best.lon):
            return sample
    from gaea.geo import reverse_geocode_many

    place = reverse_geocode_many(np.array([best.lat]), np.array([best.lon]))[0]
    raw = f"{best.lat:.5f}, {best.lon:.5f} ({best.source} candidate ranked first)"
    return Prediction(lat=best.lat, lon=best.lon, city=place.city, country=place.country,
                      reasoning=best.reasoning or raw, raw=raw)


def _check_sources(sources: Sequence[str] | None, retriever, location_model) -> None:
    """Each candidate source needs its part: neighbours a retriever, location-model a location model."""
    if sources and "neighbours" in sources and retriever is None:
        raise ConfigError("candidate source neighbours needs a gallery (a retriever)")
    if sources and "location-model" in sources and location_model is None:
        raise ConfigError("candidate source location-model needs a location model")


def _json_field(text: str, key: str) -> str:
    """A string field of the last JSON object in `text` that has it (the final one, where a model revises)."""
    for value in reversed(json_values(text)):
        if isinstance(value, dict) and isinstance(value.get(key), str):
            return value[key].strip()
    return ""


def estimate_confidence(prediction: Prediction, similar: Sequence[Neighbor],
                        candidates: Sequence[Prediction]) -> float | None:
    """Agreement of the gallery neighbours and of the ensemble with the prediction (see the module doc)."""
    if prediction.point is None:
        return None
    scores = []
    if similar:
        lats = np.array([n.lat for n in similar])
        lons = np.array([n.lon for n in similar])
        weights = np.clip(np.array([n.similarity for n in similar]), 1e-6, None)
        near = np.asarray(haversine_km(lats, lons, prediction.lat, prediction.lon)) <= AGREEMENT_KM
        scores.append(float((weights * near).sum() / weights.sum()))
    located = [c for c in candidates if c.point is not None]
    if len(candidates) > 1:
        near = [c for c in located if haversine_km(c.lat, c.lon, prediction.lat, prediction.lon) <= AGREEMENT_KM]
        scores.append(len(near) / len(candidates))
    return float(np.mean(scores)) if scores else None


def asks_about_surroundings(message: str) -> bool:
    """Whether a message asks about what is around the place ("what's nearby?", "is there a station?")."""
    return bool(_SURROUNDINGS.search(message))


def _check_location_embedder(location_model, embedder) -> None:
    """The embedder must give the location model embeddings of the width (and encoder) it was trained on."""
    if embedder is None:
        raise ConfigError("a location model reads image embeddings: give the Assistant an embedder (or a retriever, "
                          "whose embedder it then shares)")
    if embedder.dim != location_model.embedding_dim:
        raise ConfigError(
            f"the location model reads {location_model.embedding_dim}-dimensional embeddings of "
            f"{location_model.encoder or 'its encoder'}, but encoder {embedder.model_name} gives {embedder.dim}; "
            "use the encoder it was trained on"
        )
    if location_model.encoder and location_model.encoder != embedder.model_name:
        log.warning("the location model was trained on embeddings of %s; the photos are encoded with %s",
                    location_model.encoder, embedder.model_name)


def _as_pil(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    return load_image(image)
