"""Retrieval: galleries from the shared photos (tiny CLIP encoder) and the GeoCLIP gallery coordinates;
neighbours against brute-force numpy search; the compressed index through save and load."""

from __future__ import annotations

import csv
import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from gaea.errors import BadInputError, ConfigError
from gaea.exif import read_exif_gps
from gaea.retrieval import Embedder, Gallery, Retriever, SearchParams, VectorIndex, build_gallery
from gaea.retrieval.index import choose_kind

GEOTAGGED = ["67-0_length_string.jpg", "DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg", "DSCN0025.jpg",
             "DSCN0027.jpg", "DSCN0029.jpg", "Kodak_CX7530.jpg"]


@pytest.fixture(scope="module")
def embedder(tiny_encoder: Path) -> Embedder:
    return Embedder(tiny_encoder, batch_size=4)


@pytest.fixture(scope="module")
def photo_gallery(photos_dir: Path, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Gallery:
    return build_gallery(photos_dir, tmp_path_factory.mktemp("photo-gallery"), embedder, show_progress=False)


def geoclip_coordinates(shared_data: Path, n: int) -> np.ndarray:
    with open(shared_data / "benchmarks" / "geoclip_coordinates_100K.csv", newline="") as handle:
        rows = [(float(row["LAT"]), float(row["LON"])) for row in islice(csv.DictReader(handle), n)]
    return np.array(rows)


def synthetic_embeddings(coords: np.ndarray, dim: int, *, seed: int = 0) -> np.ndarray:
    """Embeddings that are similar for nearby places: random Fourier features of the point's 3-D unit
    vector (several spatial scales) plus a little noise, L2-normalised."""
    rng = np.random.default_rng(seed)
    lat, lon = np.radians(coords[:, 0]), np.radians(coords[:, 1])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    frequencies = rng.standard_normal((3, dim)) * rng.uniform(0.5, 8.0, dim)
    vectors = np.cos(xyz @ frequencies + rng.uniform(0, 2 * np.pi, dim))
    vectors += 0.02 * rng.standard_normal((len(coords), dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_photos_without_a_position_are_listed_with_their_reasons(photo_gallery: Gallery) -> None:
    skipped = {entry["photo"]: entry["reason"] for entry in photo_gallery.manifest["skipped"]}
    assert skipped == {"Canon_40D.jpg": "no_gps", "45-gps_ifd.jpg": "empty_gps"}
    assert all("EXIF" in entry["detail"] for entry in photo_gallery.manifest["skipped"])


def test_gallery_from_photo_folder_has_coordinates_places_and_embeddings(photo_gallery: Gallery,
                                                                         embedder: Embedder) -> None:
    assert sorted(photo_gallery.ids) == GEOTAGGED  # Canon_40D (no GPS) and 45-gps_ifd (empty GPS) left out
    kenya = photo_gallery.ids.index("Kodak_CX7530.jpg")
    assert photo_gallery.coords[kenya, 0] < 0  # south latitude read with its S reference
    assert photo_gallery.places[kenya].endswith("Kenya")
    assert photo_gallery.places[photo_gallery.ids.index("DSCN0010.jpg")].startswith("Arezzo")
    assert photo_gallery.manifest["encoder"] == embedder.model_name
    assert photo_gallery.manifest["index_kind"] == "flat"
    assert np.allclose(np.linalg.norm(photo_gallery.embeddings, axis=1), 1.0, atol=1e-5)


def test_neighbours_equal_brute_force_search(photo_gallery: Gallery, embedder: Embedder, photos_dir: Path,
                                             shared_data: Path, tmp_path: Path) -> None:
    coords = geoclip_coordinates(shared_data, 3000)
    embeddings = np.concatenate([np.asarray(photo_gallery.embeddings), synthetic_embeddings(coords, embedder.dim)])
    all_coords = np.concatenate([photo_gallery.coords, coords])
    ids = photo_gallery.ids + [f"geoclip:{i}" for i in range(len(coords))]
    gallery = Gallery.from_arrays(tmp_path / "mixed", embeddings, all_coords[:, 0], all_coords[:, 1], ids=ids,
                                  encoder=embedder.model_name, index_kind="flat")
    retriever = Retriever(gallery, embedder)
    for name in ("DSCN0010.jpg", "Kodak_CX7530.jpg", "67-0_length_string.jpg"):
        query = embedder.embed_one(photos_dir / name)
        similarities = embeddings @ query
        similar, dissimilar = retriever.neighbours(photos_dir / name, k_similar=16, k_dissimilar=16)
        assert similar[0].id == name  # the photo itself is in the gallery
        assert [n.id for n in similar] == [ids[i] for i in np.argsort(-similarities, kind="stable")[:16]]
        assert [n.id for n in dissimilar] == [ids[i] for i in np.argsort(similarities, kind="stable")[:16]]
        assert [n.similarity for n in similar] == pytest.approx(np.sort(similarities)[::-1][:16], abs=1e-5)
        # Dissimilar ones are truly the lowest: none outside the list is less similar than the list's highest.
        chosen = {ids.index(n.id) for n in dissimilar}
        others = np.array([s for i, s in enumerate(similarities) if i not in chosen])
        assert max(n.similarity for n in dissimilar) <= others.min() + 1e-6
        assert similar[1].place and similar[1].lat == pytest.approx(all_coords[ids.index(similar[1].id), 0])


def test_compressed_index_round_trips_through_save_and_load(shared_data: Path, tmp_path: Path) -> None:
    coords = geoclip_coordinates(shared_data, 8050)
    vectors = synthetic_embeddings(coords, 64, seed=1)
    queries, vectors = vectors[-50:], vectors[:-50]
    index = VectorIndex.build(vectors, kind="ivfpq", params=SearchParams(nprobe=16, k_factor=8))
    assert index.kind == "ivfpq" and index.ntotal == len(vectors)
    assert index.memory_bytes() < vectors.nbytes / 4
    before = index.search(queries, 16), index.search_dissimilar(queries, 16)
    index.save(tmp_path / "index.faiss")
    loaded = VectorIndex.load(tmp_path / "index.faiss")
    assert loaded.kind == "ivfpq" and loaded.params == index.params
    loaded.attach_vectors(np.load(_saved(tmp_path / "vectors.npy", vectors), mmap_mode="r"))
    after = loaded.search(queries, 16), loaded.search_dissimilar(queries, 16)
    for (scores_before, ids_before), (scores_after, ids_after) in zip(before, after, strict=True):
        assert np.array_equal(ids_before, ids_after)
        assert np.allclose(scores_before, scores_after)
    # And it approximates exact search: the GeoCLIP points crowd into cities (near-duplicate embeddings,
    # so ids tie), hence compare the true similarities of what it found with the exact best and worst.
    exact = np.sort(queries @ vectors.T, axis=1)
    found_similar = np.take_along_axis(queries @ vectors.T, after[0][1], axis=1)
    found_dissimilar = np.take_along_axis(queries @ vectors.T, after[1][1], axis=1)
    assert np.abs(found_similar.mean(axis=1) - exact[:, -16:].mean(axis=1)).max() < 0.05
    assert np.abs(found_dissimilar.mean(axis=1) - exact[:, :16].mean(axis=1)).max() < 0.05
    assert (found_similar.min(axis=1) > exact[:, :-16].mean(axis=1)).all()


def _saved(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def test_compressed_gallery_loads_memory_mapped_and_searches(shared_data: Path, tmp_path: Path) -> None:
    coords = geoclip_coordinates(shared_data, 5000)
    gallery = Gallery.from_arrays(tmp_path / "g", synthetic_embeddings(coords, 32), coords[:, 0], coords[:, 1],
                                  index_kind="hnsw")
    reopened = Gallery.load(tmp_path / "g")
    assert reopened.index.kind == "hnsw" and isinstance(reopened.embeddings, np.memmap)
    query = reopened.embeddings[42]
    scores, rows = reopened.index.search(query, 5)
    assert rows[0, 0] == 42 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert reopened.places[42] == gallery.places[42] != ""


def test_auto_index_kind_depends_on_size() -> None:
    assert choose_kind("auto", 1000) == "flat"
    assert choose_kind("auto", 1_000_000) == "ivfpq"
    assert choose_kind("hnsw", 10) == "hnsw"
    with pytest.raises(ConfigError, match="unknown index kind 'annoy'"):
        choose_kind("annoy", 10)


def test_build_resumes_and_embeds_only_new_photos(photos_dir: Path, embedder: Embedder, tmp_path: Path) -> None:
    first, everything = tmp_path / "first.csv", tmp_path / "all.csv"
    rows = [(name, *read_exif_gps(photos_dir / name)) for name in GEOTAGGED]
    for path, subset in ((first, rows[:5]), (everything, rows)):
        path.write_text("path,lat,lon\n" + "".join(f"{photos_dir / n},{la},{lo}\n" for n, la, lo in subset))
    out = tmp_path / "gallery"
    build_gallery(first, out, embedder, chunk_size=2, show_progress=False)
    assert len(list((out / "chunks").glob("*.npy"))) == 3
    # A chunk interrupted between its two files does not count and is not repeated in the order.
    (out / "chunks" / "0000000006-00003.npy").write_bytes(b"torn")
    gallery = build_gallery(everything, out, embedder, chunk_size=2, show_progress=False)
    # Chunks are named by the position of their first photo (then a counter), so the gallery keeps the order.
    new_chunks = sorted(p.stem for p in (out / "chunks").glob("*.jsonl"))
    assert new_chunks == ["0000000000-00000", "0000000002-00001", "0000000004-00002", "0000000005-00004",
                          "0000000007-00005"]
    assert gallery.ids == [str(photos_dir / n) for n in GEOTAGGED]
    fresh = embedder.embed([photos_dir / n for n in GEOTAGGED])
    order = [gallery.ids.index(str(photos_dir / n)) for n in GEOTAGGED]
    assert np.allclose(np.asarray(gallery.embeddings)[order], fresh, atol=1e-5)


def test_build_from_a_qa_dataset_and_a_hf_dataset(photos_dir: Path, embedder: Embedder, tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    dataset_dir = tmp_path / "qa"
    dataset_dir.mkdir()
    records = [{"id": f"q{i}", "image": str(photos_dir / name), "question": "Where?", "answer": "here",
                "question_type": "LOC", "lat": lat, "lon": lon}
               for i, (name, lat, lon) in enumerate((n, *read_exif_gps(photos_dir / n)) for n in GEOTAGGED[:3])]
    records.append(dict(records[0], id="q-again", question="Which country?"))  # same photo twice
    (dataset_dir / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert len(build_gallery(dataset_dir, tmp_path / "from-qa", embedder, show_progress=False)) == 3

    images = [Image.open(photos_dir / name).convert("RGB").resize((96, 64)) for name in GEOTAGGED[:4]]
    hf = datasets.Dataset.from_dict({"image": images, "latitude": [10.0, 20.0, -30.0, 40.5],
                                     "longitude": [1.0, 2.0, 3.0, -4.5]})
    hf.save_to_disk(str(tmp_path / "hf"))
    gallery = build_gallery(tmp_path / "hf", tmp_path / "from-hf", embedder, show_progress=False)
    assert len(gallery) == 4 and gallery.coords[2].tolist() == [-30.0, 3.0]


def test_bad_inputs_are_named(photos_dir: Path, embedder: Embedder, photo_gallery: Gallery, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text(f"path,lat,lon\n{photos_dir / 'DSCN0010.jpg'},north,11.8\n")
    with pytest.raises(BadInputError, match=r"bad_coordinates 1"):
        build_gallery(manifest, tmp_path / "g", embedder, show_progress=False)
    with pytest.raises(BadInputError, match="no such file or folder"):
        build_gallery(tmp_path / "missing", tmp_path / "g", embedder, show_progress=False)
    with pytest.raises(BadInputError, match="not a gallery"):
        Gallery.load(tmp_path)
    broken = tmp_path / "broken.csv"
    broken.write_text(f"path,lat,lon\n{photos_dir / 'DSCN0010.jpg'},43.4,11.8\n{tmp_path / 'nope.jpg'},1,2\n")
    gallery = build_gallery(broken, tmp_path / "g2", embedder, show_progress=False)
    assert len(gallery) == 1 and gallery.manifest["skipped"][0]["reason"] == "missing"
    assert "no such file" in gallery.manifest["skipped"][0]["detail"]
    other = Gallery.from_arrays(tmp_path / "g3", np.eye(8, dtype=np.float32), np.zeros(8), np.zeros(8), places=[""] * 8)
    with pytest.raises(ConfigError, match="8-dimensional ones"):
        Retriever(other, embedder)
