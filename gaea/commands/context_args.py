"""Command-line options that give the Assistant its context: a retrieval gallery and map data.

Used by `gaea ask`, `gaea locate`, `gaea ui` and `gaea eval geo`, so they all build the Assistant the same
way::

    add_backend_arguments(parser)
    add_context_arguments(parser)          # --gallery, --encoder, --osm-file, --overpass, --overpass-url, -k
    args = parser.parse_args(argv)
    assistant = assistant_from_args(args)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gaea.commands.parsing import given, refuse_inapplicable
from gaea.errors import ConfigError

if TYPE_CHECKING:
    from gaea.assistant import Assistant
    from gaea.models.backends import Backend
    from gaea.osm.source import OSMSource


def add_context_arguments(parser: argparse.ArgumentParser, *, map_data: bool = True) -> None:
    """Add the retrieval (--gallery, --encoder, --k-similar, --k-dissimilar, --ensemble) and, with `map_data`,
    the map-data (`add_map_arguments`) options. Commands that only locate photos leave map data out: the
    Assistant reads the map only to answer questions about the surroundings."""
    group = parser.add_argument_group("retrieval")
    group.add_argument("--gallery", type=Path, metavar="DIR",
                       help="gallery folder made by `gaea gallery build`: its nearest photos' coordinates go in "
                            "the prompt (default: none, the model answers unaided)")
    group.add_argument("--encoder", help="image encoder for the queries (default: the one the gallery was built with)")
    group.add_argument("--k-similar", type=int, default=16, metavar="K", help="similar neighbours in the prompt (16)")
    group.add_argument("--k-dissimilar", type=int, default=16, metavar="K",
                       help="dissimilar neighbours in the prompt (16)")
    group.add_argument("--ensemble", type=int, default=1, metavar="N",
                       help="answers sampled per photo over prompts with 0/5/10/15 references, aggregated (1)")
    group = parser.add_argument_group("location model")
    group.add_argument("--location-model", type=Path, metavar="DIR",
                       help="a model made by `gaea locmodel train`: its most likely places for the photo go in the "
                            "prompt beside the neighbours (it reads embeddings of the encoder it was trained on)")
    group.add_argument("--k-candidates", type=int, default=5, metavar="K",
                       help="places the location model proposes per photo (5)")
    add_ranking_arguments(parser)
    if map_data:
        add_map_arguments(parser)


def add_ranking_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --candidates, --ranker, --ranker-model and --dedupe-km (G3 / GeoRanker's two stages)."""
    from gaea.ranking import DEDUPE_KM, RANKERS

    group = parser.add_argument_group("candidates and ranking")
    group.add_argument("--candidates", metavar="SOURCES",
                       help="pool candidate places from these sources, comma-separated: lmm (the model's answers, "
                            "--ensemble of them), neighbours (the --gallery's similar photos), location-model; a "
                            "--ranker picks one (default: no pool, the model's answer; lmm with --ensemble)")
    group.add_argument("--ranker", choices=RANKERS,
                       help="median: nearest the pool's geometric median; g3: most similar to the photo in the "
                            "geoclip --location-model; lmm: ranked by the model; trained: the --ranker-model "
                            "(default: median)")
    group.add_argument("--ranker-model", type=Path, metavar="DIR",
                       help="for --ranker trained: a ranker made by `gaea finetune train --task rank` (its final/ "
                            "folder), run in this process")
    group.add_argument("--dedupe-km", type=float, default=DEDUPE_KM, metavar="KM",
                       help=f"candidates closer than this are one (default: {DEDUPE_KM:g})")


def add_map_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add the OpenStreetMap source options: --osm-file FILE or --overpass [--overpass-url URL]."""
    group = parser.add_argument_group("map data")
    source = group.add_mutually_exclusive_group(required=required)
    source.add_argument("--osm-file", type=Path, metavar="FILE",
                        help="OpenStreetMap extract (.osm, .osm.bz2, .xml, .osm.pbf or .pbf; one of "
                        "$GAEA_OSM_STORE_MIN_MB megabytes or more is read through its feature store, built on first "
                        "use) or a feature store folder made by `gaea osm index`")
    source.add_argument("--overpass", action="store_true", help="ask the Overpass API (responses are cached)")
    group.add_argument("--overpass-url", metavar="URL",
                       help="Overpass endpoint (default: the setting, $GAEA_OVERPASS_URL)")


def check_map_arguments(args: argparse.Namespace) -> None:
    """Refuse --overpass-url without --overpass (it would be ignored)."""
    if args.overpass_url and not args.overpass:
        raise ConfigError("--overpass-url applies with --overpass")


def osm_from_args(args: argparse.Namespace) -> OSMSource | None:
    """The OSMSource that `add_map_arguments`' options name, or None when they name none (or are absent)."""
    if "osm_file" not in vars(args):
        return None
    check_map_arguments(args)
    if args.osm_file:
        from gaea.osm import open_osm_source

        return open_osm_source(args.osm_file)
    if args.overpass:
        from gaea.osm import OverpassSource

        return OverpassSource(url=args.overpass_url)
    return None


def assistant_from_args(args: argparse.Namespace, backend: Backend | None = None) -> Assistant:
    """The Assistant the options describe, on ``backend`` (default: the one the model options describe).

    The gallery and the map data are opened before the default backend is built, so a bad --gallery or
    --osm-file fails in a second rather than after a model has loaded.

    Raises
    ------
    ConfigError
        When options contradict each other (e.g. --encoder without --gallery).
    BadInputError
        When the gallery or the OSM file cannot be read.
    """
    from gaea.assistant import Assistant
    from gaea.commands.common import backend_from_args, params_from_args

    params = params_from_args(args)
    sources = check_assistant_arguments(args)
    retriever, osm = _retriever_from_args(args), osm_from_args(args)
    location_model, embedder = _location_model_from_args(args, retriever)
    backend = backend or backend_from_args(args)
    ranker = None
    if sources is not None:
        from gaea.ranking import make_ranker

        ranker = make_ranker(args.ranker or "median", backend=backend, location_model=location_model,
                             embedder=embedder or (retriever.embedder if retriever else None),
                             gallery=retriever.gallery if retriever else None, model_dir=args.ranker_model,
                             device=args.device)
    return Assistant(backend, retriever, osm, k_similar=args.k_similar,
                     k_dissimilar=args.k_dissimilar, ensemble=args.ensemble, params=params,
                     location_model=location_model, embedder=embedder, k_candidates=args.k_candidates,
                     candidate_sources=sources, ranker=ranker, dedupe_km=args.dedupe_km)


def check_assistant_arguments(args: argparse.Namespace) -> tuple[str, ...] | None:
    """Refuse context options that contradict each other, before anything loads; the --candidates sources
    (None without a pool)."""
    if not (args.gallery or args.location_model):
        refuse_inapplicable(given(args, "encoder"), "to the queries of a --gallery or a --location-model",
                            "give one of them too")
    if not args.gallery:
        refuse_inapplicable(given(args, "k_similar", "k_dissimilar"), "to the neighbours from a --gallery",
                            "give --gallery DIR too")
    if not args.location_model:
        refuse_inapplicable(given(args, "k_candidates"), "with --location-model")
    return _check_ranking_arguments(args)


def _check_ranking_arguments(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The --candidates sources; options of ranking given without a pool are an error."""
    from gaea.ranking import parse_sources

    if not args.candidates:
        refuse_inapplicable(given(args, "ranker", "ranker_model", "dedupe_km"), "to a pool of --candidates",
                            "give the sources too, e.g. --candidates lmm,neighbours")
        return None
    if args.dedupe_km < 0:
        raise ConfigError(f"--dedupe-km must be 0 or more, not {args.dedupe_km}")
    if args.ranker != "trained":
        refuse_inapplicable(given(args, "ranker_model"), "with --ranker trained")
    if args.ranker == "trained" and not args.ranker_model:
        raise ConfigError("--ranker trained needs its folder: --ranker-model DIR (made by "
                          "`gaea finetune train --task rank`)")
    sources = parse_sources(args.candidates)
    if "neighbours" in sources and not args.gallery:
        raise ConfigError("--candidates neighbours needs a --gallery")
    if "location-model" in sources and not args.location_model:
        raise ConfigError("--candidates location-model needs a --location-model")
    if args.ranker == "g3" and not args.location_model:
        raise ConfigError("--ranker g3 compares the photo with each candidate in a geoclip location model: "
                          "give one with --location-model")
    return sources


def _location_model_from_args(args: argparse.Namespace, retriever):
    """The --location-model and the encoder of its queries: the retriever's when it is the same encoder."""
    if not args.location_model:
        return None, None
    from gaea.location import load_location_model

    model = load_location_model(args.location_model)
    wanted = args.encoder or model.encoder or None
    if retriever is not None and (wanted is None or wanted == retriever.embedder.model_name):
        return model, retriever.embedder
    from gaea.retrieval import Embedder

    return model, Embedder(wanted)


def _retriever_from_args(args: argparse.Namespace):
    if not args.gallery:
        return None
    from gaea.retrieval import Embedder, Gallery, Retriever

    gallery = Gallery.load(args.gallery)
    return Retriever(gallery, Embedder(args.encoder or gallery.encoder or None))

