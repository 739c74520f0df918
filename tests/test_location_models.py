"""Location models (gaea.location) and their training (finetune.location, `gaea locmodel`).

No real image weights exist here, so no real image embeddings either: the accuracy tests train on the
SYNTHETIC benchmark of `gaea.location.synthetic`, the real 100k MP-16 coordinates of GeoCLIP's gallery
with an "image embedding" from a fixed smooth random function of each position plus noise, trained on
80,000 of them and tested on the other 20,000 (small models, one epoch, so that the file stays within a few
minutes of one CPU thread; `benchmarks/location_models.py --full` trains bigger ones longer). Its figures
are about the models' mechanics, never about accuracy on real photos. The representation tests (SHDD, S2
cells) use the real coordinates directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import s2sphere
import torch

from finetune.location import LocationData, load_train_config, train_location_model
from gaea.errors import BadInputError, ConfigError
from gaea.geo.distance import THRESHOLDS_KM, accuracy_at, haversine_km, threshold_key
from gaea.location import SphericalHarmonics, evaluate_predictions, load_location_model
from gaea.location.s2cells import build_cell_tree, point_cells
from gaea.location.synthetic import SYNTHETIC_ENCODER, read_coordinates, synthetic_benchmark, trivial_predictions
from gaea.retrieval.gallery import Gallery

TRAIN, TEST = 80_000, 20_000

#: Small models and short runs, sized for a shared 2-core CPU.
SMALL = {
    "geoclip": {"epochs": 1, "batch_size": 256, "learning_rate": 1e-3, "queue_size": 512,
                "model": {"dim": 64, "image_hidden": 128, "fourier_features": 32, "location_hidden": 128,
                          "location_layers": 2}},
    "s2": {"epochs": 1, "batch_size": 256, "learning_rate": 2e-3, "model": {"hidden": 64, "max_photos": 50}},
    "shdd": {"epochs": 1, "batch_size": 256, "learning_rate": 1e-3, "model": {"hidden": 128, "degree": 48}},
}


#: The tests share a small CPU with others (conftest.py: one torch thread for the module).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def coordinates_csv(shared_data: Path) -> Path:
    return shared_data / "benchmarks" / "geoclip_coordinates_100K.csv"


@pytest.fixture(scope="module")
def benchmark(coordinates_csv: Path):
    return synthetic_benchmark(coordinates_csv, train=TRAIN, test=TEST)


@pytest.fixture(scope="module")
def best_trivial(benchmark) -> dict[str, float]:
    """Per threshold, the best accuracy of any constant guess (the medoid, the densest S2 cells)."""
    best = {threshold_key(t): 0.0 for t in THRESHOLDS_KM}
    for lat, lon in trivial_predictions(benchmark.train_coords).values():
        distances = haversine_km(benchmark.test_coords[:, 0], benchmark.test_coords[:, 1], lat, lon)
        for key, value in accuracy_at(distances).items():
            best[key] = max(best[key], value)
    return best


def train(kind: str, benchmark, out: Path, **settings) -> object:
    values = {**SMALL[kind.split("-")[0]], "kind": kind.split("-")[0], "out": str(out), "held_out": 0.0,
              **settings}
    config = load_train_config(None, values)
    data = LocationData(benchmark.train_embeddings, benchmark.train_coords, SYNTHETIC_ENCODER, "synthetic")
    return train_location_model(config, data, show_progress=False)


@pytest.fixture(scope="module")
def trained(benchmark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One model of each kind (and geoclip with semivariogram negatives), trained once for the module."""
    root = tmp_path_factory.mktemp("location-models")
    return {
        "geoclip": train("geoclip", benchmark, root / "geoclip"),
        "geoclip-semivariogram": train("geoclip", benchmark, root / "geoclip-sv", negatives="semivariogram"),
        "s2": train("s2", benchmark, root / "s2"),
        "shdd": train("shdd", benchmark, root / "shdd"),
    }


@pytest.fixture(scope="module")
def test_metrics(trained, benchmark) -> dict[str, dict]:
    """Each trained model's metrics on the 20,000 test photos (default decoding), computed once for the module."""
    return {name: evaluate_predictions(result.model, benchmark.test_embeddings, benchmark.test_coords)
            for name, result in trained.items()}


# -- accuracy on the synthetic benchmark -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["geoclip", "geoclip-semivariogram", "s2", "shdd"])
def test_every_kind_beats_the_best_trivial_predictor_by_a_wide_margin(name: str, test_metrics,
                                                                      best_trivial) -> None:
    """No real image weights exist here: synthetic embeddings of real MP-16 coordinates (see the module)."""
    metrics = test_metrics[name]
    print(f"{name}: {metrics['accuracy']} vs best trivial {best_trivial}")
    for key in ("25km", "200km", "750km"):
        # A wide margin: at least twice the best constant guess, and 3 points above it.
        assert metrics["accuracy"][key] >= max(2 * best_trivial[key], best_trivial[key] + 3), (key, metrics)


def test_s2_beam_search_beats_greedy_decoding(trained, benchmark) -> None:
    """No real image weights exist here: synthetic embeddings of real MP-16 coordinates (see the module)."""
    model = trained["s2"].model
    greedy = evaluate_predictions(model, benchmark.test_embeddings, benchmark.test_coords, decoding="greedy")
    beam = evaluate_predictions(model, benchmark.test_embeddings, benchmark.test_coords, decoding="beam", beam_width=4)
    print(f"s2 greedy {greedy['accuracy']} GeoScore {greedy['geoscore']:.0f}; "
          f"beam {beam['accuracy']} GeoScore {beam['geoscore']:.0f}")
    assert beam["geoscore"] > greedy["geoscore"]
    assert sum(beam["accuracy"][k] for k in ("25km", "200km", "750km")) > \
        sum(greedy["accuracy"][k] for k in ("25km", "200km", "750km"))


def test_semivariogram_negatives_change_training_against_plain_ones(trained, test_metrics) -> None:
    """No real image weights exist here: synthetic embeddings of real MP-16 coordinates (see the module)."""
    plain, weighted = trained["geoclip"], trained["geoclip-semivariogram"]
    assert plain.metrics["settings"]["seed"] == weighted.metrics["settings"]["seed"]
    difference = max(float((a - b).abs().max()) for a, b in zip(plain.model.state_dict().values(),
                                                                 weighted.model.state_dict().values(), strict=True))
    assert difference > 1e-3  # same seed, same data: only the negatives' weights differ
    report = {"plain": test_metrics["geoclip"], "semivariogram": test_metrics["geoclip-semivariogram"]}
    print("geoclip negatives:", {name: (m["accuracy"], round(m["geoscore"])) for name, m in report.items()})
    assert report["plain"]["accuracy"] != report["semivariogram"]["accuracy"]
    fitted = weighted.metrics["semivariogram"]
    assert 0 <= fitted["nugget"] < fitted["sill"] and fitted["range_km"] > 0
    # Nearby photos look alike: the empirical semivariance grows with distance.
    gamma = np.asarray(fitted["gamma"])
    assert gamma[-5:].mean() > gamma[:5].mean() + 0.1
    png = weighted.out / "semivariogram.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((weighted.out / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "TensorBoard logs were written"


def test_shdd_diffusion_learns_the_places_and_its_samples_refine_the_regression_prior(benchmark, best_trivial,
                                                                                    tmp_path: Path) -> None:
    """No real image weights exist here: synthetic embeddings of real MP-16 coordinates (see the module).

    LocDiff's conditional diffusion (the denoiser corrects the jointly trained regression prior). Drawn from
    pure noise, a sample is one plausible place, so as a point estimate it trails the prior's mode on a
    budget this small; started from the noised prior it refines it. Both are reported."""
    result = train("shdd", benchmark, tmp_path / "diffusion", epochs=2,
                   model={"hidden": 128, "degree": 16, "variant": "diffusion"})
    model = result.model
    full = evaluate_predictions(model, benchmark.test_embeddings, benchmark.test_coords, samples=2)
    refined = evaluate_predictions(model, benchmark.test_embeddings, benchmark.test_coords, samples=1, start=0.1)
    print(f"shdd diffusion from noise {full['accuracy']}, from the noised prior {refined['accuracy']}, "
          f"best trivial {best_trivial}")
    for metrics in (full, refined):
        for key in ("200km", "750km"):
            assert metrics["accuracy"][key] >= max(2 * best_trivial[key], best_trivial[key] + 3), (key, metrics)
    assert model.predict(benchmark.test_embeddings[:3], 2, samples=2)[0][0].source == "shdd-diffusion"


# -- the representations on real coordinates -------------------------------------------------------------


def test_shdd_encode_then_decode_returns_1000_real_points_at_degree_20(coordinates_csv: Path) -> None:
    """No image embeddings are involved: real gallery coordinates only."""
    coords = read_coordinates(coordinates_csv)[:1000]
    harmonics = SphericalHarmonics(20)
    coefficients = torch.from_numpy(harmonics.encode(coords[:, 0], coords[:, 1]))
    # A point's delta has the same energy everywhere: sum over l of (2l + 1) / (4 pi).
    assert torch.allclose((coefficients ** 2).sum(dim=1), torch.tensor(harmonics.delta_peak), rtol=1e-4)
    lat, lon, value = harmonics.modes(coefficients, 1)
    error_km = haversine_km(lat[:, 0], lon[:, 0], coords[:, 0], coords[:, 1])
    resolution_km = 180 / 20 * 111.2  # about 1,000 km at L = 20
    assert error_km.max() < 0.01 * resolution_km, error_km.max()
    assert np.allclose(value[:, 0], 1.0, atol=1e-3)  # the peak of a perfect delta


def test_shdd_two_point_mixtures_decode_to_two_modes(coordinates_csv: Path) -> None:
    """No image embeddings are involved: real gallery coordinates only."""
    coords = read_coordinates(coordinates_csv)
    first, second = coords[:2000], coords[2000:4000]
    apart = haversine_km(first[:, 0], first[:, 1], second[:, 0], second[:, 1]) > 4 * 180 / 20 * 111.2
    first, second = first[apart][:300], second[apart][:300]
    harmonics = SphericalHarmonics(20)
    mixture = torch.from_numpy((harmonics.encode(first[:, 0], first[:, 1]) + harmonics.encode(second[:, 0],
                                                                                             second[:, 1])) / 2)
    lat, lon, value = harmonics.modes(mixture, 2)
    assert not np.isnan(lat).any()
    for points in (first, second):
        nearest = np.minimum(haversine_km(lat[:, 0], lon[:, 0], points[:, 0], points[:, 1]),
                             haversine_km(lat[:, 1], lon[:, 1], points[:, 0], points[:, 1]))
        assert np.median(nearest) < 50 and nearest.max() < 150, (np.median(nearest), nearest.max())
    assert (value > 0.35).all()  # each mode carries about half of a delta's peak


def test_s2_vocabulary_covers_every_training_point_and_paths_are_parent_child_chains(trained, benchmark,
                                                                                      coordinates_csv: Path) -> None:
    """No real image weights exist here: the decoded paths come from the synthetic-benchmark model."""
    coords = read_coordinates(coordinates_csv)[:20_000]
    tree, leaves = build_cell_tree(coords[:, 0], coords[:, 1], max_photos=40)
    assert (leaves >= 0).all()
    finest = point_cells(coords[:, 0], coords[:, 1], [30])[:, 0]
    import s2sphere

    for row in range(0, len(coords), 97):  # s2sphere confirms that each point's leaf contains it
        leaf = s2sphere.CellId(int(np.int64(tree.cell_ids[leaves[row]]).view(np.uint64)))
        assert leaf.contains(s2sphere.CellId(int(np.int64(finest[row]).view(np.uint64))))
    is_leaf = np.ones(len(tree), dtype=bool)
    is_leaf[tree.parents[tree.parents >= 0]] = False
    assert is_leaf[leaves].all()
    split_limit = tree.counts[is_leaf] <= 40
    assert split_limit[tree.levels[is_leaf] < 12].all()  # only max-level leaves may hold more than N
    assert tree.counts[tree.parents < 0].sum() == len(coords)

    model = trained["s2"].model
    embeddings = torch.from_numpy(benchmark.test_embeddings[:200])
    with torch.no_grad():
        paths, _ = model.beam_search(embeddings, 4)
        greedy, _ = model.beam_search(embeddings, 1)
    ids = model.cell_ids.numpy()
    for path in [*paths.reshape(-1, paths.shape[-1]).tolist(), *greedy[:, 0].tolist()]:
        nodes = [node for node in path if node >= 0]
        assert nodes and is_valid_chain(ids, nodes)
        assert int(model.child_table[nodes[-1], 0]) < 0  # every path ends at a leaf
    sampled = model.predict(benchmark.test_embeddings[:50], 3, decoding="sample", samples=8)
    assert all(1 <= len(candidates) <= 3 for candidates in sampled)


# -- saving, loading, resuming ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["geoclip", "s2", "shdd", "shdd-diffusion"])
def test_save_load_and_resume_give_the_same_predictions(kind: str, benchmark, tmp_path: Path) -> None:
    """No real image weights exist here: a few synthetic-benchmark photos, trained for two short epochs."""
    small = synthetic_benchmark_slice(benchmark, 1024)
    tiny = {"batch_size": 128, "checkpoint_every": 3, "epochs": 2}
    if kind == "shdd-diffusion":
        kind, tiny = "shdd", {**tiny, "model": {"hidden": 64, "degree": 16, "variant": "diffusion"}}
    straight = train(kind, small, tmp_path / "straight", **tiny)

    stopped_at = []

    def interrupt(step: int, loss: float) -> None:
        if step == 5:
            stopped_at.append(step)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        config = load_train_config(None, {**SMALL[kind], "kind": kind, "out": str(tmp_path / "resumed"),
                                          "held_out": 0.0, **tiny})
        train_location_model(config, LocationData(small.train_embeddings, small.train_coords, SYNTHETIC_ENCODER),
                             show_progress=False, on_step=interrupt)
    assert stopped_at == [5]
    resumed = train(kind, small, tmp_path / "resumed", **tiny)
    assert resumed.resumed_from == 3 and resumed.steps == straight.steps

    queries = small.test_embeddings[:64]
    expected = straight.model.predict_arrays(queries, 3)
    for model in (resumed.model, load_location_model(tmp_path / "straight")):
        for got, want in zip(model.predict_arrays(queries, 3), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def synthetic_benchmark_slice(benchmark, count: int):
    from gaea.location.synthetic import SyntheticBenchmark

    return SyntheticBenchmark(benchmark.train_embeddings[:count], benchmark.train_coords[:count],
                              benchmark.test_embeddings[:count], benchmark.test_coords[:count])


# -- bad input -------------------------------------------------------------------------------------------


def test_bad_inputs_give_one_clear_error(trained, benchmark, tmp_path: Path) -> None:
    """No real image weights exist here: the model is the synthetic-benchmark geoclip."""
    with pytest.raises(BadInputError, match="no photos"):
        LocationData(np.zeros((0, 64), np.float32), np.zeros((0, 2)), source="empty")
    with pytest.raises(BadInputError, match="have no coordinates"):
        LocationData(np.ones((3, 64), np.float32), np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]]))
    model = trained["geoclip"].model
    with pytest.raises(BadInputError, match="64-dimensional"):
        model.predict(np.ones((2, 65), np.float32))
    with pytest.raises(ConfigError, match="unknown prediction option"):
        model.predict(benchmark.test_embeddings[:2], decoding="beam")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_train_config(None, {"kind": "s2", "max_photo": 3})


def write_gallery(root: Path, embeddings: np.ndarray, coords: np.ndarray) -> Path:
    Gallery.from_arrays(root, embeddings, coords[:, 0], coords[:, 1], places=[""] * len(coords),
                        encoder=SYNTHETIC_ENCODER, built_from="synthetic benchmark")
    return root


def gaea(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`gaea ARGS...` in this process: (exit code, stdout, stderr)."""
    from gaea.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_gaea_locmodel_train_and_eval_end_to_end(benchmark, tmp_path: Path, capsys) -> None:
    """No real image weights exist here: the gallery holds synthetic-benchmark embeddings."""
    gallery = write_gallery(tmp_path / "gallery", benchmark.train_embeddings[:3000], benchmark.train_coords[:3000])
    recipe = tmp_path / "s2.yaml"
    recipe.write_text("epochs: 1\nbatch_size: 128\nheld_out: 0.2\nmodel:\n  hidden: 32\n  max_photos: 100\n")
    out = tmp_path / "run"
    train_args = ["locmodel", "train", "--kind", "s2", "--gallery", str(gallery), "--out", str(out),
                  "--config", str(recipe)]
    code, stdout, stderr = gaea(capsys, *train_args)
    assert code == 0, stderr
    assert "s2 model saved to" in stdout and "held-out 600 photos" in stdout
    assert "train s2" in stderr  # the progress bar
    for name in ("model.safetensors", "config.json", "metrics.json", "split.json", "checkpoints/latest"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out_photos"] == 600 and set(metrics["held_out"]["accuracy"]) == {
        "1km", "25km", "200km", "750km", "2500km"}

    code, stdout, stderr = gaea(capsys, "locmodel", "eval", "--model", str(out), "--gallery", str(gallery),
                                "--only-held-out", "--decoding", "greedy", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["count"] == 600 and report["kind"] == "s2" and report["options"] == {"decoding": "greedy"}
    assert report["accuracy"]["2500km"] > 0

    # A rerun with the same settings resumes from the final checkpoint and trains no more.
    code, stdout, _ = gaea(capsys, *train_args)
    assert code == 0 and f"resumed at step {metrics['steps']}" in stdout
    code, _, stderr = gaea(capsys, *train_args, "--seed", "7")
    assert code == 2 and "was made with seed 0; this run asks for seed 7" in stderr
    code, stdout, stderr = gaea(capsys, *train_args, "--seed", "7", "--overwrite")
    assert code == 0 and "resumed" not in stdout, stderr


def test_gaea_locmodel_bad_inputs_are_one_line_and_exit_2(trained, benchmark, tmp_path: Path, capsys) -> None:
    """No real image weights exist here: the galleries hold synthetic-benchmark embeddings."""
    gallery = write_gallery(tmp_path / "gallery", benchmark.train_embeddings[:300], benchmark.train_coords[:300])
    empty = tmp_path / "empty"
    empty.mkdir()
    no_coords = write_gallery(tmp_path / "no-coords", benchmark.train_embeddings[:300], benchmark.train_coords[:300])
    (no_coords / "coords.npy").unlink()
    wide = write_gallery(tmp_path / "wide", np.ones((10, 32), np.float32), benchmark.train_coords[:10])
    cases = [
        (["train", "--kind", "geoclip", "--gallery", str(empty), "--out", str(tmp_path / "a")], "not a gallery"),
        (["train", "--kind", "geoclip", "--gallery", str(no_coords), "--out", str(tmp_path / "b")],
         "coords.npy missing"),
        (["train", "--kind", "s2", "--gallery", str(gallery), "--out", str(tmp_path / "c"), "--negatives",
          "semivariogram"], "apply to kind geoclip"),
        (["train", "--kind", "s2", "--gallery", str(gallery)], "--out DIR"),
        (["eval", "--model", str(empty), "--gallery", str(gallery)], "not a location model"),
        (["eval", "--model", str(trained["geoclip"].out), "--gallery", str(wide)],
         "this geoclip model reads 64-dimensional embeddings"),
        (["eval", "--model", str(trained["geoclip"].out), "--gallery", str(gallery), "--decoding", "beam"],
         "unknown prediction option(s) decoding"),
    ]
    for args, message in cases:
        code, _, stderr = gaea(capsys, "locmodel", *args)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, stderr)


def test_a_second_concurrent_training_run_is_refused(benchmark, tmp_path: Path) -> None:
    """No real image weights exist here: a few synthetic-benchmark embeddings."""
    from gaea.errors import RunInUseError
    from gaea.runs import RunLock

    out = tmp_path / "busy"
    with RunLock(out), pytest.raises(RunInUseError, match="is in use by another run"):  # as a running one holds it
        train("s2", synthetic_benchmark_slice(benchmark, 256), out, epochs=1)


# -- the Assistant -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_gallery(photos_dir: Path, tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    from gaea.retrieval import Embedder, build_gallery

    embedder = Embedder(tiny_encoder)
    root = tmp_path_factory.mktemp("photo-gallery")
    build_gallery(photos_dir, root, embedder, show_progress=False)
    return root, embedder


@pytest.fixture(scope="module")
def photo_location_model(photo_gallery, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A geoclip model trained on the tiny encoder's embeddings of the shared photos (no real weights: the
    tiny encoder is random, so this is about plumbing, not accuracy)."""
    gallery, _ = photo_gallery
    out = tmp_path_factory.mktemp("photo-geoclip")
    config = load_train_config(None, {**SMALL["geoclip"], "kind": "geoclip", "out": str(out), "held_out": 0.0,
                                      "epochs": 3, "batch_size": 4})
    train_location_model(config, LocationData.from_gallery(gallery), show_progress=False)
    return out


def test_the_assistant_puts_location_model_candidates_in_the_prompt(photos_dir: Path, photo_gallery,
                                                                     photo_location_model: Path) -> None:
    """No real image weights exist here: the tiny random encoder and a geoclip model trained on its embeddings."""
    from gaea.assistant import Assistant
    from gaea.models.backends.openai_compat import OpenAIBackend
    from gaea.retrieval import Retriever
    from tests.servers import Reply, scripted_http_server

    gallery, embedder = photo_gallery
    model = load_location_model(photo_location_model)
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content":
              '{"latitude": 43.46, "longitude": 11.88, "city": "Arezzo", "country": "Italy"}'}}]}
    photo = photos_dir / "DSCN0012.jpg"
    with scripted_http_server([Reply(200, json.dumps(answer))]) as server:
        backend = OpenAIBackend(server.base_url, model="scripted", retries=0)
        assistant = Assistant(backend, Retriever(gallery, embedder), k_similar=2, k_dissimilar=1,
                              location_model=model, k_candidates=3)
        prediction = assistant.locate(photo)
        prompt = json.loads(server.bodies[0])["messages"][-1]["content"][-1]["text"]
    expected = model.predict(embedder.embed_one(photo), 3)[0]
    assert [(c.lat, c.lon) for c in prediction.candidates] == [(c.lat, c.lon) for c in expected]
    assert "A location model trained on geotagged photos proposes these places" in prompt
    for candidate in prediction.candidates:
        assert candidate.source == "geoclip" and candidate.place
        assert f"{candidate.lat:.4f}, {candidate.lon:.4f}" in prompt and candidate.place in prompt
    assert (prediction.lat, prediction.lon) == (43.46, 11.88)

    with pytest.raises(ConfigError, match="give the Assistant an embedder"):
        Assistant(backend, location_model=model)
    from gaea.location import GeoCLIPModel

    other_width = GeoCLIPModel({**SMALL["geoclip"]["model"], "embedding_dim": embedder.dim + 1})
    with pytest.raises(ConfigError, match=f"reads {embedder.dim + 1}-dimensional embeddings"):
        Assistant(backend, location_model=other_width, embedder=embedder)


def test_gaea_locate_with_a_location_model_records_its_candidates(photos_dir: Path, photo_gallery,
                                                                   photo_location_model: Path, tiny_encoder: Path,
                                                                   capsys) -> None:
    """No real image weights exist here: the tiny random encoder and a geoclip model trained on its embeddings."""
    from tests.servers import Reply, scripted_http_server

    gallery, _ = photo_gallery
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Somewhere in Kenya."}}]}
    with scripted_http_server([Reply(200, json.dumps(answer))]) as server:
        code, stdout, stderr = gaea(capsys, "locate", "--base-url", server.base_url, "--served-model", "scripted",
                                    "--gallery", str(gallery), "--encoder", str(tiny_encoder), "--location-model",
                                    str(photo_location_model), "--k-candidates", "2", "--json",
                                    str(photos_dir / "DSCN0010.jpg"))
    assert code == 0, stderr
    record = json.loads(stdout)
    assert len(record["candidates"]) == 2
    assert {"lat", "lon", "score", "source", "place"} <= record["candidates"][0].keys()
    code, _, stderr = gaea(capsys, "locate", "--base-url", "http://127.0.0.1:9/v1", "--k-candidates", "3",
                           str(photos_dir / "DSCN0010.jpg"))
    assert code == 2 and "--k-candidates applies with --location-model" in stderr


def is_valid_chain(cell_ids: np.ndarray, path: list[int]) -> bool:
    """Whether each cell of ``path`` (node numbers into ``cell_ids``) is an S2 descendant of the one before,
    checked by s2sphere itself."""
    cells = [s2sphere.CellId(int(np.int64(cell_ids[node]).view(np.uint64))) for node in path]
    return all(parent.level() < child.level() and child.parent(parent.level()) == parent
               for parent, child in zip(cells, cells[1:], strict=False))
