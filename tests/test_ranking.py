"""Candidates and ranking (gaea.ranking): the pool, the median / g3 / lmm rankers, `gaea locate --candidates
--ranker`, `gaea eval geo` recording the ranking, the map of candidates.

No real image weights exist here. The accuracy test runs on the SYNTHETIC benchmark of
`gaea.location.synthetic` (real MP-16 coordinates, "image embeddings" from a fixed smooth random field of the
position plus noise), with candidates from a location model trained on it, from the gallery's neighbours and
from a scripted LMM on 127.0.0.1 that answers with known offsets (`gaea.ranking.synthetic`): its figures are
about the rankers' mechanics, never about real photos. The end-to-end tests use the tiny random encoder and
tiny VLM on the real photos of ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from finetune.config import load_config
from finetune.location import LocationData, load_train_config, train_location_model
from finetune.rank import train_ranker
from gaea.errors import ConfigError
from gaea.geo import haversine_km
from gaea.location.synthetic import SYNTHETIC_ENCODER, synthetic_benchmark
from gaea.models.backends.openai_compat import OpenAIBackend
from gaea.ranking import MedianRanker, gather_candidates, parse_sources
from gaea.ranking.g3 import G3Ranker
from gaea.ranking.lmm import LMMRanker, parse_ranking
from gaea.ranking.synthetic import (
    PHOTO_SIZE,
    RANKER_TRAINING,
    SyntheticEncoder,
    markdown_table,
    ranking_table,
    scripted_answers,
    synthetic_photo,
    synthetic_pools,
    with_evidence_photos,
    write_ranking_set,
)
from gaea.ranking.trained import TrainedRanker
from gaea.retrieval import Retriever
from gaea.retrieval.gallery import Gallery
from gaea.types import Candidate, Neighbor, Prediction
from tests.servers import Reply, scripted_http_server

TRAIN, TEST = 12_000, 400
#: Test photos whose pools the trained ranker learns on; it ranks the others.
RANKER_TRAIN = 200
RECIPE = Path(__file__).resolve().parents[1] / "finetune" / "recipes" / "georanker-qwen2.5-vl.yaml"
GEOCLIP = {"epochs": 3, "batch_size": 256, "learning_rate": 1e-3, "queue_size": 1024,
           "model": {"dim": 64, "image_hidden": 128, "fourier_features": 32, "location_hidden": 128,
                     "location_layers": 2}}
S2 = {"epochs": 2, "batch_size": 256, "learning_rate": 2e-3, "model": {"hidden": 64, "max_photos": 50}}


def completion(content: str) -> str:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


#: The tests share a small CPU with others (conftest.py: one torch thread for the module).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the synthetic benchmark ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Per test photo of the synthetic benchmark: a pool from the scripted LMM (6 answers over HTTP), 4
    gallery neighbours and an s2 model's 3 beam-search places; and the geoclip model G3 ranks with."""
    bench = synthetic_benchmark(shared_data / "benchmarks" / "geoclip_coordinates_100K.csv", train=TRAIN, test=TEST)
    data = LocationData(bench.train_embeddings, bench.train_coords, SYNTHETIC_ENCODER, "synthetic")
    root = tmp_path_factory.mktemp("ranking-synthetic")
    models = {}
    for kind, settings in (("geoclip", GEOCLIP), ("s2", S2)):
        config = load_train_config(None, {**settings, "kind": kind, "out": str(root / kind), "held_out": 0.0})
        models[kind] = train_location_model(config, data, show_progress=False).model
    photos = [str(root / "photos" / f"gallery-{row:05d}.png") for row in range(TRAIN)]  # written when shown
    gallery = Gallery.from_arrays(root / "gallery", bench.train_embeddings, bench.train_coords[:, 0],
                                  bench.train_coords[:, 1], places=[""] * TRAIN, sources=photos,
                                  encoder=SYNTHETIC_ENCODER)
    retriever = Retriever(gallery, SyntheticEncoder(bench.train_embeddings.shape[1]))
    answers = scripted_answers(bench.test_coords, offsets_km=(15, 600, 605, 610, 615, 620))
    with scripted_http_server([Reply(200, completion(a)) for photo in answers for a in photo]) as server:
        backend = OpenAIBackend(server.base_url, model="scripted", retries=0)
        pools = synthetic_pools(bench.test_embeddings, answers, backend, retriever, models["s2"],
                                decoding="beam", beam_width=4)
    return bench, pools, models["geoclip"], gallery


def test_g3_picks_the_nearest_candidate_far_more_often_than_the_median_and_chance(synthetic) -> None:
    """No real image weights exist here: synthetic embeddings of real MP-16 coordinates (see the module)."""
    bench, pools, geoclip, _ = synthetic
    assert {c.source for pool in pools for c in pool} == {"lmm-sample", "neighbour", "s2-beam"}
    g3, median = G3Ranker(geoclip), MedianRanker()
    chosen = {
        "median": [median.rank(None, pool)[0] for pool in pools],
        "g3": [g3.rank(None, pool, embedding=e)[0] for pool, e in zip(pools, bench.test_embeddings, strict=True)],
    }
    table = ranking_table(chosen, pools, bench.test_coords)
    print("\n" + markdown_table(table))
    g3_row, median_row, chance = table["g3"], table["median"], table["chance"]
    assert g3_row["picks_nearest_%"] >= max(1.3 * median_row["picks_nearest_%"], 2 * chance["picks_nearest_%"])
    for key in ("25km", "200km"):
        assert g3_row[key] >= median_row[key] + 10 and g3_row[key] >= chance[key] + 15, key


def test_the_trained_ranker_picks_the_nearest_candidate_far_more_often_than_the_median_and_chance(
        synthetic, tiny_vlm: Path, tmp_path: Path) -> None:
    """No real image weights exist here: the tiny random VLM with LoRA and a head learns (`gaea finetune train
    --task rank`'s code, the multi-order loss) on the pools of 200 synthetic photos, each photo and each
    candidate's 3 nearest gallery photos shown as synthetic pictures of their embeddings, then ranks the
    pools of 200 others: it learns to tell which candidates' photos look like the photo."""
    bench, pools, _, gallery = synthetic
    pools = with_evidence_photos(pools, gallery, RANKER_TRAINING["rank_evidence_images"])
    data = write_ranking_set(tmp_path / "ranking", pools[:RANKER_TRAIN], bench.test_embeddings,
                             bench.test_coords[:RANKER_TRAIN])
    config = load_config(RECIPE, {**RANKER_TRAINING, "model_name_or_path": str(tiny_vlm), "data": str(data),
                                  "output_dir": str(tmp_path / "ranker"), "max_steps": 300})
    ranker = TrainedRanker.load(train_ranker(config).final_dir)
    scored, embeddings = pools[RANKER_TRAIN:], bench.test_embeddings[RANKER_TRAIN:]
    chosen = {
        "median": [MedianRanker().rank(None, pool)[0] for pool in scored],
        "trained": [ranker.rank(synthetic_photo(e, size=PHOTO_SIZE), pool)[0]
                    for pool, e in zip(scored, embeddings, strict=True)],
    }
    table = ranking_table(chosen, scored, bench.test_coords[RANKER_TRAIN:])
    print("\n" + markdown_table(table))
    trained, median, chance = table["trained"], table["median"], table["chance"]
    assert trained["picks_nearest_%"] >= max(1.3 * median["picks_nearest_%"], 2 * chance["picks_nearest_%"])
    for key in ("25km", "200km"):
        assert trained[key] >= median[key] + 5 and trained[key] >= chance[key] + 15, key


# -- the pool ---------------------------------------------------------------------------------------------


def test_the_pool_merges_candidates_within_the_radius_and_keeps_their_evidence() -> None:
    samples = [Prediction(43.4674, 11.8851, city="Arezzo", country="Italy", reasoning="towers"),
               Prediction(raw="no idea"), Prediction(48.8566, 2.3522, city="Paris", country="France")]
    neighbours = [Neighbor("a", 43.4676, 11.8853, 0.9, "Arezzo"), Neighbor("b", 45.0, 7.0, 0.5, "Turin")]
    places = [Candidate(43.4680, 11.8860, 0.4, "geoclip", "Arezzo, Tuscany, Italy"),
              Candidate(-1.29, 36.82, 0.1, "geoclip", "Nairobi")]
    pool = gather_candidates(samples, neighbours, places, radius_km=1.0)
    assert [(c.source, c.place) for c in pool] == [("lmm-sample", "Arezzo, Italy"), ("lmm-sample", "Paris, France"),
                                                   ("neighbour", "Turin"), ("geoclip", "Nairobi")]
    assert pool[0].reasoning == "towers" and [p.id for p in pool[0].photos] == ["a"]  # merged neighbour's photo
    assert len(gather_candidates(samples, neighbours, places, radius_km=0.0)) == 6
    assert parse_sources("lmm, neighbours") == ("lmm", "neighbours")
    for bad in ("lmm,lmm", "", "lmm,gallery"):
        with pytest.raises(ConfigError, match="candidate sources"):
            parse_sources(bad)


# -- the lmm ranker ---------------------------------------------------------------------------------------

POOL = [Candidate(43.4674, 11.8851, 1.0, "lmm-sample", "Arezzo, Italy"),
        Candidate(48.8566, 2.3522, 1.0, "lmm-sample", "Paris, France"),
        Candidate(43.47, 11.88, 0.9, "neighbour", "Arezzo", photos=(Neighbor("DSCN0010", 43.467, 11.885, 0.9),)),
        Candidate(-1.29, 36.82, 0.2, "geoclip", "Nairobi, Kenya")]


def test_a_valid_lmm_ranking_is_applied_exactly(photos_dir: Path) -> None:
    from PIL import Image

    photo = Image.open(photos_dir / "DSCN0010.jpg").convert("RGB")
    replies = ['I think: {"ranking": [3, 1, 4, 2]}', '```json\n{"ranking": [4]}\n```']
    with scripted_http_server([Reply(200, completion(reply)) for reply in replies]) as server:
        ranker = LMMRanker(OpenAIBackend(server.base_url, model="scripted", retries=0))
        full = ranker.rank(photo, POOL)
        partial = ranker.rank(photo, POOL)
        asked = json.loads(server.bodies[0])["messages"][-1]["content"]
    assert [c.place for c in full] == ["Arezzo", "Arezzo, Italy", "Nairobi, Kenya", "Paris, France"]
    assert full.ranker == "lmm" and [c.rank_score for c in full] == [4.0, 3.0, 2.0, 1.0]
    median_order = [c.place for c in MedianRanker().rank(photo, POOL) if c.place != "Nairobi, Kenya"]
    assert [c.place for c in partial] == ["Nairobi, Kenya", *median_order]  # the rest in the fallback's order
    assert asked[0]["type"] == "image_url"  # the photo goes with the question
    text = asked[-1]["text"]
    assert '3. 43.4700, 11.8800 ("Arezzo") [neighbour]' in text and '"ranking"' in text
    assert '"DSCN0010" 0.5 km' in text  # the gallery photo near the candidate, and how far


@pytest.mark.parametrize("reply", ["The first one.", '{"ranking": [1, 1, 2]}', '{"ranking": [5, 1]}',
                                   "{'ranking': [2, 1]}", '{"ranking": ["2", "1"]}', '{"ranking": []}'])
def test_an_unreadable_lmm_ranking_falls_back_to_the_median(reply: str) -> None:
    assert parse_ranking(reply, 4) is None
    with scripted_http_server([Reply(200, completion(reply))]) as server:
        ranking = LMMRanker(OpenAIBackend(server.base_url, model="scripted", retries=0)).rank(None, POOL)
    assert ranking.ranker == "lmm (fallback median)"
    assert ranking == MedianRanker().rank(None, POOL)


def test_the_lmm_ranker_on_a_served_tiny_model_falls_back_cleanly(tiny_vlm: Path, photos_dir: Path) -> None:
    """The tiny model has random weights: its replies are gibberish, never a ranking."""
    from gaea.types import GenerationParams
    from tests.servers import transformers_serve

    with transformers_serve(tiny_vlm) as base_url:
        backend = OpenAIBackend(base_url, retries=0)
        ranker = LMMRanker(backend, params=GenerationParams(max_new_tokens=12))
        ranking = ranker.rank(photos_dir / "DSCN0010.jpg", POOL)
    assert ranking.ranker == "lmm (fallback median)"
    assert [c.place for c in ranking] == [c.place for c in MedianRanker().rank(None, POOL)]


# -- gaea locate, gaea eval geo, the map ------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_parts(photos_dir: Path, tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    """A gallery of the shared photos by the tiny random encoder and a geoclip model trained on it (plumbing,
    not accuracy: the encoder is random)."""
    from gaea.retrieval import Embedder, build_gallery

    root = tmp_path_factory.mktemp("ranking-photos")
    gallery = root / "gallery"
    build_gallery(photos_dir, gallery, Embedder(tiny_encoder), show_progress=False)
    config = load_train_config(None, {**GEOCLIP, "kind": "geoclip", "out": str(root / "geoclip"), "held_out": 0.0,
                                      "epochs": 2, "batch_size": 4})
    train_location_model(config, LocationData.from_gallery(gallery), show_progress=False)
    return gallery, root / "geoclip"


def test_gaea_locate_ranks_the_pool_with_g3_and_records_it(photos_dir: Path, photo_parts, capsys) -> None:
    from gaea.cli import main

    gallery, geoclip = photo_parts
    answer = completion('{"latitude": 48.8566, "longitude": 2.3522, "city": "Paris", "country": "France"}')
    with scripted_http_server([Reply(200, answer)]) as server:
        code = main(["locate", "--base-url", server.base_url, "--served-model", "scripted", "--gallery", str(gallery),
                     "--location-model", str(geoclip), "--k-similar", "3", "--k-candidates", "2", "--candidates",
                     "lmm,neighbours,location-model", "--ranker", "g3", "--json", str(photos_dir / "DSCN0010.jpg")])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    candidates = record["candidates"]
    assert record["ranker"] == "g3" and {c["source"] for c in candidates} >= {"lmm-sample", "neighbour"}
    scores = [c["rank_score"] for c in candidates]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert (record["lat"], record["lon"]) == (candidates[0]["lat"], candidates[0]["lon"])

    for extra, problem in ((["--ranker", "g3"], "give the sources too"),
                           (["--candidates", "neighbours"], "needs a --gallery"),
                           (["--candidates", "lmm,location-model"], "needs a --location-model"),
                           (["--candidates", "lmm", "--ranker", "g3"], "geoclip location model"),
                           (["--candidates", "lmm", "--ranker", "trained"], "--ranker-model DIR"),
                           (["--candidates", "lmm", "--ranker-model", "x"], "applies with --ranker trained")):
        assert main(["locate", *extra, "--base-url", "http://127.0.0.1:9/v1", str(photos_dir / "DSCN0010.jpg")]) == 2
        assert problem in capsys.readouterr().err, extra


def test_eval_geo_records_the_ranker_and_compare_shows_it(shared_data: Path, photo_parts, tmp_path: Path) -> None:
    from eval.compare import compare_table
    from gaea.cli import main

    gallery, _ = photo_parts
    answer = completion('{"latitude": 43.4674, "longitude": 11.8851, "city": "Arezzo", "country": "Italy"}')
    runs = {}
    with scripted_http_server([Reply(200, answer)]) as server:
        for name, extra in (("answer", []), ("ranked", ["--candidates", "lmm,neighbours", "--ranker", "median"])):
            out = runs[name] = tmp_path / name
            assert main(["eval", "geo", "--truth", str(shared_data / "photos" / "expected_gps.csv"), "--images",
                         str(shared_data / "photos"), "--base-url", server.base_url, "--served-model", "scripted",
                         "--gallery", str(gallery),
                         "--k-similar", "3", "--k-dissimilar", "0", *extra, "--out", str(out)]) == 0
    ranking = json.loads((runs["ranked"] / "results.json").read_text())["ranking"]
    assert ranking == {"ranker": "median", "candidates": ["lmm", "neighbours"]}
    table = compare_table([runs["answer"], runs["ranked"]])
    assert "| ranker | none | median |" in table and "| candidates | lmm | lmm,neighbours |" in table


def test_the_map_shows_every_candidate_and_highlights_the_chosen_one() -> None:
    from ui.app import prediction_markdown
    from ui.map import map_html

    ranking = MedianRanker().rank(None, POOL)
    best = ranking[0]
    prediction = Prediction(best.lat, best.lon, city="Arezzo", country="Italy", candidates=list(ranking),
                            ranker=ranking.ranker)
    page = map_html(prediction)
    assert page.count('class="gaea-candidate"') == len(POOL) - 1  # the chosen one is the predicted marker
    assert "ranked first by median" in page and "(geoclip)" in page and "other ranked candidates" in page
    assert "**Candidates ranked by median**" in prediction_markdown(prediction)
    assert float(haversine_km(best.lat, best.lon, 43.47, 11.88)) < 1


def test_an_empty_pool_keeps_the_unusable_answer() -> None:
    ranking = MedianRanker().rank(None, gather_candidates([Prediction(raw="no idea")]))
    assert ranking == [] and ranking.ranker == "median"
    assert np.isfinite(MedianRanker().rank(None, POOL[:1])[0].rank_score)
