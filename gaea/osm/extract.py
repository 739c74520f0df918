"""Reading the features of an OpenStreetMap extract on disk, in one streaming pass.

Every format (``.osm``, ``.osm.bz2``, ``.xml``, ``.osm.pbf``, ``.pbf``) is read with pyosmium, which streams
XML, bzip2-compressed XML and PBF alike, with its node locations in memory or in a file on disk. The
in-memory source and the on-disk store read through here, so they hold the very same features in the same
order, and a large XML extract gets its store in bounded memory like a PBF.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from gaea.errors import BadInputError, OSMError
from gaea.osm._geometry import representative_lat_lon
from gaea.osm.features import (
    CATEGORY_KEYS,
    DISTINGUISHING_KEYS,
    OSMFeature,
    describe_tags,
    feature_from_description,
)
from gaea.osm.source import Bounds

log = logging.getLogger(__name__)

XML_SUFFIXES = (".osm", ".osm.bz2", ".xml", ".osm.xml")
PBF_SUFFIXES = (".osm.pbf", ".pbf")
_IDENTITY_SAMPLE = 1 << 20  # bytes hashed at each end of the file


def checked_extract_path(path: str | Path) -> Path:
    """`path` resolved, after checking it is a file with an extract's suffix.

    Raises
    ------
    BadInputError
        The file is missing or its suffix is not one of XML_SUFFIXES / PBF_SUFFIXES.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInputError(f"OSM extract {str(path)!r} does not exist or is not a file")
    if not path.name.lower().endswith(XML_SUFFIXES + PBF_SUFFIXES):
        raise BadInputError(
            f"OSM extract {str(path)!r} has an unsupported suffix; "
            f"expected one of {', '.join(XML_SUFFIXES + PBF_SUFFIXES)}"
        )
    return path.resolve()


def extract_identity(path: Path) -> dict:
    """What tells one version of an extract from another: size, modification time and a hash of both ends
    (an extract is rewritten whole, so a new version differs in size, time or its first and last bytes)."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_IDENTITY_SAMPLE))
        if stat.st_size > _IDENTITY_SAMPLE:
            handle.seek(max(_IDENTITY_SAMPLE, stat.st_size - _IDENTITY_SAMPLE))
            digest.update(handle.read())
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def header_bounds(path: Path) -> Bounds | None:
    """The box the extract's header declares (``<bounds>`` in XML, the PBF header's bbox), if any."""
    import osmium

    try:
        reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
        try:
            box = reader.header().box()
        finally:
            reader.close()
    except RuntimeError as error:
        log.info("%s: no header bounds (%s)", path, error)
        return None
    if not box.valid():
        return None
    return Bounds(box.bottom_left.lat, box.bottom_left.lon, box.top_right.lat, box.top_right.lon)


def read_features(path: Path, *, locations: str = "flex_mem") -> Iterator[OSMFeature]:
    """The features of the extract at `path`, in file order, one at a time.

    `locations` is pyosmium's node location index ("flex_mem" in memory, or e.g. "sparse_file_array,FILE"
    on disk for extracts whose nodes do not fit in memory).

    Raises
    ------
    OSMError
        The file could not be parsed.
    """
    try:
        yield from _read(path, locations)
    except (OSMError, BadInputError):
        raise
    except Exception as error:
        raise OSMError(f"could not read OSM extract {str(path)!r}: {type(error).__name__}: {error}") from error


def _read(path: Path, locations: str) -> Iterator[OSMFeature]:
    import osmium
    from shapely.geometry import LineString, MultiPolygon, Polygon

    processor = (
        osmium.FileProcessor(str(path))
        .with_locations(locations)
        .with_areas(osmium.filter.KeyFilter(*CATEGORY_KEYS))
        .with_filter(osmium.filter.KeyFilter(*CATEGORY_KEYS))
    )
    for obj in processor:
        if obj.is_area() and obj.from_way():
            continue  # pyosmium's area of a closed way: the way itself is read as a way
        tag = obj.tags.get  # asking for the few keys kept beats walking every tag through Python objects
        tags = {key: value for key in DISTINGUISHING_KEYS if (value := tag(key)) is not None}
        description = describe_tags(tags)
        if description is None:
            continue  # most elements (plain buildings, street furniture): no geometry to work out
        if obj.is_node():
            osm_type, osm_id = "node", obj.id
            point = obj.location.lat, obj.location.lon  # what representative_lat_lon gives for a point
        elif obj.is_way():
            coords = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
            if len(coords) < 2:
                continue
            is_area = obj.is_closed() and len(coords) >= 4 and "highway" not in tags
            osm_type, osm_id = "way", obj.id
            point = representative_lat_lon(Polygon(coords) if is_area else LineString(coords))
        elif obj.is_area():
            polygons = [Polygon([(n.lon, n.lat) for n in ring]) for ring in obj.outer_rings()]
            if not polygons:
                continue
            osm_type, osm_id = "relation", obj.orig_id()
            point = representative_lat_lon(MultiPolygon(polygons))
        else:
            continue
        feature = feature_from_description(osm_type, osm_id, description, *point) if point else None
        if feature is not None:
            yield feature
