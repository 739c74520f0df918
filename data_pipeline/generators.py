"""Template QA generation: one photo, the OSM features around it and its place context -> QA records.

Every record cites the evidence its answer rests on: the OSM elements (with only the tags the answer
uses) and the context facts. A template that lacks what it needs is not used for that photo. Choices
(which template, which distractors, option order) come from a random generator seeded by the run's seed
and the photo's id, so a photo gets the same questions whatever chunk or worker it lands in.

True/false questions come in pairs, one true and one false statement per pair, so the dataset is
balanced exactly.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from data_pipeline.context import PlaceContext, continent_candidates, country_candidates
from data_pipeline.inputs import Photo
from data_pipeline.labels import distractor_labels, with_article
from data_pipeline.lookup import BACKGROUND_KEYS, FeatureTable, Nearby
from gaea.records import FALSE, QUESTION_TYPES, TRUE, QARecord, stable_id

ALL_TYPES = QUESTION_TYPES
LVQA_MAX_FEATURES = 4
CLOSEST_NAMED_POOL = 8
CLOSEST_NAMED_SCAN = 64
DISTRACTOR_WORDS = tuple(label for label, _ in distractor_labels())


@dataclass(frozen=True)
class GenerationConfig:
    """How many records of which types to make per photo."""

    types: tuple[str, ...] = ALL_TYPES
    seed: int = 0
    per_type: int = 2
    radius_m: float = 1000.0
    source: str = ""


class _Item(NamedTuple):
    """One feature near the photo, as templates see it (a tuple: thousands are made per second)."""

    row: int
    distance_m: float
    name: str
    key: str = ""
    label: str = ""


class _Photo:
    """Everything the templates of one photo look at."""

    __slots__ = ("photo", "context", "config", "rng", "nearby", "by_label", "radius_text", "notable",
                 "_notable_named")

    def __init__(self, photo: Photo, context: PlaceContext, config: GenerationConfig, rng: random.Random,
                 nearby: Nearby, by_label: list[_Item], radius_text: str):
        self.photo, self.context, self.config, self.rng = photo, context, config, rng
        self.nearby, self.by_label, self.radius_text = nearby, by_label, radius_text
        # Nearest feature of each category, points of interest before roads, land use and plain buildings
        # (most templates look at it, so it is made at once).
        self.notable = [item for item in by_label if item.key not in BACKGROUND_KEYS] or by_label
        self._notable_named: list[_Item] | None = None

    @property
    def table(self) -> FeatureTable:
        return self.nearby.table

    @property
    def notable_named(self) -> list[_Item]:
        if self._notable_named is None:
            named = [item for item in self.by_label if item.name]
            self._notable_named = [item for item in named if item.key not in BACKGROUND_KEYS] or named
        return self._notable_named

    @property
    def absent(self) -> tuple[tuple[str, tuple[str, str]], ...]:
        """(label, (key, value)) of the distractor categories absent within the radius (none when the
        source did not see the whole circle: absence there is unknown, not evidence)."""
        return _absent_categories(self.nearby.present_bits) if self.nearby.covered else ()

    @property
    def absent_labels(self) -> tuple[str, ...]:
        return _absent_labels(self.nearby.present_bits) if self.nearby.covered else ()


@lru_cache(maxsize=4096)
def _absent_categories(present_bits: int) -> tuple[tuple[str, tuple[str, str]], ...]:
    """The distractor categories whose bit is clear (neighbouring photos share their mask, hence the cache)."""
    return tuple(entry for bit, entry in enumerate(distractor_labels()) if not (present_bits >> bit) & 1)


@lru_cache(maxsize=4096)
def _absent_labels(present_bits: int) -> tuple[str, ...]:
    return tuple(label for label, _ in _absent_categories(present_bits))


def _radius_text(radius_m: float) -> str:
    return f"{radius_m / 1000:g} km" if radius_m >= 1000 else f"{radius_m:.0f} m"


# ---------------------------------------------------------------------------------------------- public entry


def generate_records(
    photos: Sequence[Photo],
    nearby: Sequence[Nearby],
    contexts: Sequence[PlaceContext],
    config: GenerationConfig,
) -> list[QARecord]:
    """The QA records of a batch of photos.

    `nearby[i]` holds the OSM features around `photos[i]` (see `data_pipeline.lookup`) and
    `contexts[i]` its place context.
    """
    records: list[QARecord] = []
    radius_text = _radius_text(config.radius_m)
    for photo, around, context in zip(photos, nearby, contexts, strict=True):
        records.extend(records_for_photo(photo, around, context, config, radius_text=radius_text))
    return records


def records_for_photo(photo: Photo, nearby: Nearby, context: PlaceContext, config: GenerationConfig, *,
                      radius_text: str | None = None) -> list[QARecord]:
    """The QA records of one photo, in a fixed type order (`radius_text`: the radius in words, if at hand)."""
    state = _Photo(photo, context, config, _photo_rng(config.seed, photo.photo_id), nearby,
                   _nearest_of_each_label(nearby), radius_text or _radius_text(config.radius_m))
    records: list[QARecord] = []
    for qtype in config.types:
        if qtype == "TF":
            records.extend(_true_false_pairs(state))
        else:
            records.extend(_pick(state, _TEMPLATES[qtype], config.per_type))
    return records


def _photo_rng(seed: int, photo_id: str) -> random.Random:
    """A generator seeded by the run's seed and the photo (not its position), so chunks and workers cannot
    change a photo's questions. Integer seeding is several times cheaper than seeding with a string."""
    try:
        return random.Random((seed << 64) ^ int(photo_id, 16))
    except ValueError:  # an id that is not hex (ids made by data_pipeline.inputs always are)
        return random.Random(f"{seed}:{photo_id}")


def _nearest_of_each_label(nearby: Nearby) -> list[_Item]:
    """The nearest feature of each category present, nearest first."""
    table = nearby.table
    rows, distances = nearby.first_rows, nearby.first_distances
    names, keys, labels = table.row_name, table.row_key, table.row_label
    # tuple.__new__ directly: a NamedTuple's own constructor is a Python function, several times slower.
    return [_new_tuple(_Item, (row, distance, names[row], keys[row], labels[row]))
            for row, distance in zip(rows, distances, strict=True)]


_new_tuple = tuple.__new__


@lru_cache(maxsize=16)
def _permutations(size: int) -> tuple[tuple[int, ...], ...]:
    return tuple(itertools.permutations(range(size)))


def _shuffled(rng: random.Random, items: Sequence[Any]) -> list[Any]:
    """`items` in a uniformly random order drawn with one random number (a shuffle draws one per item;
    the lists shuffled here are short and this runs several times per photo)."""
    if len(items) > 8:
        order = list(items)
        rng.shuffle(order)
        return order
    permutations = _permutations(len(items))
    return [items[i] for i in permutations[rng.randrange(len(permutations))]]


def _pick(state: _Photo, templates: Sequence[Callable[[_Photo], QARecord | None]], count: int) -> list[QARecord]:
    """Up to `count` records from templates tried in a seeded random order (inapplicable ones skipped)."""
    chosen = []
    order = _shuffled(state.rng, templates)
    for template in order:
        if len(chosen) == count:
            break
        record = template(state)
        if record is not None:
            chosen.append(record)
    return chosen


def _true_false_pairs(state: _Photo) -> list[QARecord]:
    pairs = max(1, state.config.per_type // 2)
    trues = _pick(state, _TRUE_STATEMENTS, pairs)
    falses = _pick(state, _FALSE_STATEMENTS, len(trues))
    records = []
    for pair in zip(trues, falses, strict=False):  # as many falses as trues, or fewer
        records.extend(pair)
    return records


# ---------------------------------------------------------------------------------------------- record pieces


def _record(state: _Photo, template: str, qtype: str, question: str, answer: str, evidence: list[dict],
            options: list[str] | None = None) -> QARecord:
    photo = state.photo
    return QARecord(stable_id(photo.image, f"{qtype}:{template}"), photo.image, question, answer, qtype, photo.lat,
                    photo.lon, state.context.location, options, state.config.source, evidence)


def _feature_evidence(state: _Photo, item: _Item, keys: Sequence[str]) -> dict[str, Any]:
    return state.table.evidence(item.row, item.distance_m, keys)


def _absence_evidence(state: _Photo, key: str, value: str) -> dict[str, str]:
    return {
        "kind": "osm_absence",
        "value": f"no {key}={value} within {state.config.radius_m:.0f} m",
        "source": state.config.source,
    }


def _distance_text(metres: float) -> str:
    """'about 40 m' (to the nearest ten metres, at least 10) or 'about 1.2 km'."""
    if metres < 1000:
        return _METRES_TEXT[max(1, _nearest_ten(metres))]
    return f"about {metres / 1000:.1f} km"


def _nearest_ten(metres: float) -> int:
    """`round(metres, -1) / 10` for 0 <= metres < 1000, without the decimal conversion `round(x, -1)` makes.

    `metres % 10` is exact for floats, so the rounding direction is read off it exactly; a remainder of
    exactly 5 rounds half to even, as `round` does.
    """
    tens, rest = divmod(metres, 10.0)
    tens = int(tens)
    return tens + 1 if rest > 5.0 or (rest == 5.0 and tens % 2) else tens


_METRES_TEXT = tuple(f"about {tens * 10} m" for tens in range(101))


def _options(state: _Photo, answer: str, candidates: Sequence[str]) -> list[str] | None:
    """Four options (the answer and three distinct wrong ones, shuffled), or None when too few candidates."""
    # Drawing a few candidates first keeps this cheap for long candidate lists; the full scan is the fallback.
    draws = (state.rng.sample(candidates, min(len(candidates), 6)), candidates)
    for pool in draws:
        seen = {answer.casefold()}
        wrong = []
        for candidate in pool:
            folded = candidate.casefold()
            if candidate and folded not in seen:
                seen.add(folded)
                wrong.append(candidate)
        if len(wrong) >= 3:
            return _shuffled(state.rng, [answer, *(wrong[:3] if pool is draws[0] else state.rng.sample(wrong, 3))])
    return None


# ---------------------------------------------------------------------------------------------- MCQ


def _one_of(state: _Photo, candidates: Sequence[Any]) -> Any:
    """One of `candidates` drawn with the photo's generator, or None when there is none."""
    return state.rng.choice(candidates) if candidates else None


def _mcq_nearby_category(state: _Photo) -> QARecord | None:
    item = _one_of(state, state.notable)
    if item is None:
        return None
    options = _options(state, item.label, state.absent_labels)
    if options is None:
        return None
    question = f"Which of these can be found within {state.radius_text} of where this photo was taken?"
    evidence = [_feature_evidence(state, item, [item.key])]
    return _record(state, "nearby_category", "MCQ", question, item.label, evidence, options)


def _mcq_feature_kind(state: _Photo) -> QARecord | None:
    item = _one_of(state, state.notable_named)
    if item is None:
        return None
    options = _options(state, item.label, DISTRACTOR_WORDS)
    if options is None:
        return None
    question = (f'What kind of place is "{item.name}", {_distance_text(item.distance_m)} '
                "from where this photo was taken?")
    evidence = [_feature_evidence(state, item, [item.key, "name"])]
    return _record(state, "feature_kind", "MCQ", question, item.label, evidence, options)


def _mcq_closest_named(state: _Photo) -> QARecord | None:
    table, nearby = state.table, state.nearby
    named: list[_Item] = []
    seen: set[str] = set()
    positions = np.flatnonzero(table.named[nearby.rows])[:CLOSEST_NAMED_SCAN]
    for row, distance in zip(nearby.rows[positions].tolist(), nearby.distances[positions].tolist(), strict=True):
        name = table.row_name[row]
        folded = name.casefold()
        if folded in seen:  # a farther part of a name already seen (a long street): its nearest part counts
            continue
        seen.add(folded)
        # A name tied in distance with the previous one is left out, so exactly one option is the closest.
        if not named or distance > named[-1].distance_m:
            named.append(_Item(row, distance, name))
        if len(named) == CLOSEST_NAMED_POOL:
            break
    if len(named) < 4:
        return None
    chosen = sorted(state.rng.sample(named, 4), key=lambda item: item.distance_m)
    options = _shuffled(state.rng, [item.name for item in chosen])
    question = "Which of these places is closest to where this photo was taken?"
    evidence = [_feature_evidence(state, item, ["name"]) for item in chosen]
    return _record(state, "closest_named", "MCQ", question, chosen[0].name, evidence, options)


def _mcq_fact(kind: str, question: str, candidates: Callable[[PlaceContext], Sequence[str]],
              evidence: tuple[str, ...]) -> Callable[[_Photo], QARecord | None]:
    """An MCQ whose answer is the `kind` fact of the photo's place, the wrong options drawn from `candidates`."""

    def template(state: _Photo) -> QARecord | None:
        context = state.context
        answer = getattr(context, kind)
        if not answer:
            return None
        options = _options(state, answer, candidates(context))
        if options is None:
            return None
        return _record(state, kind, "MCQ", question, answer, [context.fact(name) for name in evidence], options)

    return template


_mcq_country = _mcq_fact("country", "In which country was this photo taken?",
                         lambda context: country_candidates(context.country_code), ("country",))
_mcq_city = _mcq_fact("city", "Which city or town is nearest to where this photo was taken?",
                      lambda context: context.nearby_cities, ("city", "country"))
_mcq_continent = _mcq_fact("continent", "On which continent was this photo taken?",
                           lambda context: continent_candidates(context.continent), ("continent",))


# ---------------------------------------------------------------------------------------------- TF


def _statement(state: _Photo, template: str, text: str, truth: bool, evidence: list[dict]) -> QARecord:
    question = f"True or false: {text}"
    return _record(state, template, "TF", question, TRUE if truth else FALSE, evidence)


def _tf_category_present(state: _Photo) -> QARecord | None:
    item = _one_of(state, state.notable)
    if item is None:
        return None
    text = f"there is {with_article(item.label)} within {state.radius_text} of where this photo was taken."
    return _statement(state, "category_present", text, True, [_feature_evidence(state, item, [item.key])])


def _tf_category_absent(state: _Photo) -> QARecord | None:
    absent = state.absent
    if not absent:
        return None
    label, (key, value) = state.rng.choice(absent)
    text = f"there is {with_article(label)} within {state.radius_text} of where this photo was taken."
    return _statement(state, "category_absent", text, False, [_absence_evidence(state, key, value)])


def _tf_country(truth: bool) -> Callable[[_Photo], QARecord | None]:
    def template(state: _Photo) -> QARecord | None:
        context = state.context
        if not context.country:
            return None
        named = context.country
        if not truth:
            wrong = [name for name in country_candidates(context.country_code) if name != context.country]
            if not wrong:
                return None
            named = state.rng.choice(wrong)
        text = f"this photo was taken in {named}."
        return _statement(state, f"country_{truth}", text, truth, [context.fact("country")])

    return template


def _tf_hemisphere(truth: bool) -> Callable[[_Photo], QARecord | None]:
    def template(state: _Photo) -> QARecord | None:
        actual = state.context.north_south
        named = actual if truth else {"Northern": "Southern", "Southern": "Northern"}[actual]
        text = f"this photo was taken in the {named} Hemisphere."
        return _statement(state, f"hemisphere_{truth}", text, truth, [state.context.fact("hemisphere_ns")])

    return template


def _tf_driving_side(truth: bool) -> Callable[[_Photo], QARecord | None]:
    def template(state: _Photo) -> QARecord | None:
        context = state.context
        if context.driving_side not in ("left", "right") or not context.country:
            return None
        named = context.driving_side if truth else {"left": "right", "right": "left"}[context.driving_side]
        text = f"traffic drives on the {named} where this photo was taken."
        evidence = [context.fact("country"), context.fact("driving_side")]
        return _statement(state, f"driving_side_{truth}", text, truth, evidence)

    return template


def _tf_continent(truth: bool) -> Callable[[_Photo], QARecord | None]:
    def template(state: _Photo) -> QARecord | None:
        context = state.context
        if not context.continent:
            return None
        named = context.continent if truth else state.rng.choice(continent_candidates(context.continent))
        text = f"this photo was taken in {named}."
        return _statement(state, f"continent_{truth}", text, truth, [context.fact("continent")])

    return template


# ---------------------------------------------------------------------------------------------- SVQA


def _svqa_nearest_name(state: _Photo) -> QARecord | None:
    # Only categories whose nearest member has a name: "the nearest cafe" must be that cafe.
    item = _one_of(state, [item for item in state.notable if item.name])
    if item is None:
        return None
    question = f"What is the name of the nearest {item.label} to where this photo was taken?"
    return _record(state, "nearest_name", "SVQA", question, item.name,
                   [_feature_evidence(state, item, [item.key, "name"])])


def _svqa_nearest_distance(state: _Photo) -> QARecord | None:
    item = _one_of(state, state.notable)
    if item is None:
        return None
    question = f"About how far from where this photo was taken is the nearest {item.label}?"
    answer = _distance_text(item.distance_m).capitalize() + "."
    return _record(state, "nearest_distance", "SVQA", question, answer, [_feature_evidence(state, item, [item.key])])


def _svqa_fact(kind: str, question: str, answer_format: str = "{}") -> Callable[[_Photo], QARecord | None]:
    def template(state: _Photo) -> QARecord | None:
        if not state.context.has(kind):
            return None
        fact = state.context.fact(kind)
        return _record(state, kind, "SVQA", question, answer_format.format(fact["value"]), [fact])

    return template


# ---------------------------------------------------------------------------------------------- LVQA and LOC


def _place_sentence(context: PlaceContext) -> tuple[str, list[dict]]:
    parts = [part for part in (context.city, context.region, context.country) if part]
    kinds = [kind for kind in ("city", "region", "country") if context.has(kind)]
    sentence = f"This photo was taken near {', '.join(parts)}" if parts else "This photo was taken"
    if context.continent:
        sentence += f", in {context.continent}"
        kinds.append("continent")
    sentence += f", in the {context.north_south} and {context.east_west} hemispheres."
    kinds += ["hemisphere_ns", "hemisphere_ew"]
    if context.driving_side in ("left", "right"):
        sentence += f" Traffic there drives on the {context.driving_side}."
        kinds.append("driving_side")
    return sentence, [context.fact(kind) for kind in kinds]


def _feature_phrase(item: _Item) -> str:
    named = f' ("{item.name}")' if item.name else ""
    return f"{with_article(item.label)}{named} {_distance_text(item.distance_m)} away"


def _lvqa_description(state: _Photo) -> QARecord | None:
    sentence, evidence = _place_sentence(state.context)
    nearby = state.notable[:LVQA_MAX_FEATURES]
    if nearby:
        phrases = [_feature_phrase(item) for item in nearby]
        listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        sentence += f" According to OpenStreetMap, within {state.radius_text} there is {listed}."
        evidence += [_feature_evidence(state, item, [item.key, "name"]) for item in nearby]
    elif state.nearby.covered:
        sentence += f" OpenStreetMap lists no notable places within {state.radius_text}."
        evidence.append({"kind": "osm_absence", "value": f"no features within {state.config.radius_m:.0f} m",
                         "source": state.config.source})
    question = "Describe where this photo was taken and what is around that spot."
    return _record(state, "description", "LVQA", question, sentence, evidence)


def _loc_place(state: _Photo) -> QARecord | None:
    context = state.context
    if not context.location:
        return None
    answer = f"{context.location} ({context.lat:.5f}, {context.lon:.5f})"
    kinds = [kind for kind in ("city", "country") if context.has(kind)] + ["coordinates"]
    question = "Where was this photo taken? Give the city, the country and the coordinates."
    return _record(state, "place", "LOC", question, answer, [context.fact(kind) for kind in kinds])


_TEMPLATES: dict[str, tuple[Callable[[_Photo], QARecord | None], ...]] = {
    "MCQ": (_mcq_nearby_category, _mcq_feature_kind, _mcq_closest_named, _mcq_country, _mcq_city, _mcq_continent),
    "SVQA": (
        _svqa_nearest_name,
        _svqa_nearest_distance,
        _svqa_fact("country", "In which country was this photo taken?"),
        _svqa_fact("region", "In which region (state or province) was this photo taken?"),
        _svqa_fact("city", "Which city or town is nearest to where this photo was taken?"),
        _svqa_fact("continent", "On which continent was this photo taken?"),
        _svqa_fact("driving_side", "On which side of the road does traffic drive where this photo was taken?",
                   "On the {}."),
    ),
    "LVQA": (_lvqa_description,),
    "LOC": (_loc_place,),
}
_TRUE_STATEMENTS = (_tf_category_present, _tf_country(True), _tf_hemisphere(True), _tf_driving_side(True),
                    _tf_continent(True))
_FALSE_STATEMENTS = (_tf_category_absent, _tf_country(False), _tf_hemisphere(False), _tf_driving_side(False),
                     _tf_continent(False))
