"""Human words for OpenStreetMap categories ("amenity=post_office" -> "post office"), and the vocabulary of
common categories that multiple-choice and true/false questions draw their wrong answers from."""

from __future__ import annotations

from functools import lru_cache

ROAD_CLASSES = frozenset(
    "motorway trunk primary secondary tertiary unclassified residential service living_street "
    "motorway_link trunk_link primary_link secondary_link tertiary_link road track".split()
)
# What "key=yes" means in words.
GENERIC_LABELS = {
    "amenity": "amenity",
    "shop": "shop",
    "tourism": "tourist attraction",
    "historic": "historic site",
    "leisure": "leisure facility",
    "office": "office",
    "craft": "craft workshop",
    "healthcare": "healthcare facility",
    "railway": "railway",
    "public_transport": "public transport stop",
    "man_made": "man-made structure",
    "building": "building",
    "landuse": "land use area",
}
# Shop values that already read as a kind of shop.
SHOP_WORDS = frozenset("bakery supermarket butcher florist hairdresser kiosk mall department_store optician "
                       "greengrocer stationery pharmacy".split())
# Values whose plain words read badly ("a parking", "a stop position").
OVERRIDES = {
    ("amenity", "parking"): "parking lot",
    ("amenity", "parking_space"): "parking space",
    ("railway", "subway"): "subway line",
    ("railway", "rail"): "railway line",
    ("railway", "tram"): "tram line",
    ("public_transport", "stop_position"): "public transport stop",
    ("public_transport", "station"): "public transport station",
    ("leisure", "pitch"): "sports pitch",
    ("natural", "water"): "body of water",
}
SUFFIXES = {"office": " office", "landuse": " area", "sport": " facility", "craft": " workshop"}

# Common categories that wrong answers are drawn from, so that a distractor is a real kind of place.
DISTRACTOR_CATEGORIES: tuple[tuple[str, str], ...] = tuple(
    tuple(item.split("=")) for item in (
        "amenity=cafe amenity=restaurant amenity=bank amenity=pharmacy amenity=school amenity=hospital "
        "amenity=post_office amenity=place_of_worship amenity=fuel amenity=library amenity=bar amenity=fast_food "
        "amenity=police amenity=fire_station amenity=cinema amenity=theatre amenity=marketplace amenity=townhall "
        "amenity=university amenity=fountain shop=supermarket shop=bakery shop=clothes shop=convenience "
        "shop=hairdresser shop=butcher shop=bicycle shop=books tourism=museum tourism=hotel tourism=artwork "
        "tourism=viewpoint historic=castle historic=monument historic=memorial historic=ruins leisure=park "
        "leisure=playground leisure=stadium leisure=swimming_pool railway=station natural=beach natural=peak "
        "waterway=river man_made=lighthouse man_made=tower aeroway=aerodrome"
    ).split()
)


@lru_cache(maxsize=4096)
def category_label(key: str, value: str) -> str:
    """A short English name for the category `key=value`, e.g. ("shop", "clothes") -> "clothes shop"."""
    if (key, value) in OVERRIDES:
        return OVERRIDES[(key, value)]
    words = value.replace("_", " ").replace(";", ", ").strip().lower()
    if not words or words == "yes":
        return GENERIC_LABELS.get(key, key.replace("_", " "))
    if key == "highway":
        return f"{words} road" if value in ROAD_CLASSES else words
    if key == "shop" and value not in SHOP_WORDS:
        return f"{words} shop"
    if key == "public_transport":
        return f"public transport {words}"
    return words + SUFFIXES.get(key, "")


@lru_cache(maxsize=1)
def distractor_labels() -> tuple[tuple[str, tuple[str, str]], ...]:
    """(label, (key, value)) of every distractor category."""
    return tuple((category_label(key, value), (key, value)) for key, value in DISTRACTOR_CATEGORIES)


def with_article(label: str) -> str:
    """'a cafe', 'an artwork'."""
    return f"{'an' if label[:1].lower() in 'aeiou' else 'a'} {label}"
