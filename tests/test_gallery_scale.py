"""Galleries beyond memory: indexes filled in chunks and shards, the on-disk inverted lists, metadata read
row by row, and `gaea gallery merge` of parts built apart (equal to one gallery built in one go)."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from gaea.cli import main
from gaea.errors import BadInputError
from gaea.exif import read_exif_gps
from gaea.retrieval import Embedder, Gallery, VectorIndex, build_gallery, merge_galleries
from gaea.retrieval import index as index_module
from gaea.retrieval.index import disk_factory_string, training_sample
from tests.test_retrieval import GEOTAGGED, geoclip_coordinates, synthetic_embeddings

GALLERY_FILES = ("embeddings.npy", "coords.npy", "metadata.jsonl", "metadata.offsets.npy", "index.faiss")


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """FAISS on one thread: on a shared, loaded machine OpenMP's waiting threads make small trainings 20x slower."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def embedder(tiny_encoder: Path) -> Embedder:
    return Embedder(tiny_encoder, batch_size=4)


@pytest.fixture(scope="module")
def vectors(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """3,050 spatially realistic synthetic embeddings (GeoCLIP gallery coordinates), memory-mapped from disk."""
    path = tmp_path_factory.mktemp("vectors") / "vectors.npy"
    np.save(path, synthetic_embeddings(geoclip_coordinates(shared_data, 3050), 64, seed=3))
    return np.load(path, mmap_mode="r")


def test_chunked_fill_builds_the_same_index_as_one_add(vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = VectorIndex.build(vectors[:-50], kind="ivfpq")
    monkeypatch.setattr(index_module, "ADD_CHUNK", 700)
    chunked = VectorIndex.build(vectors[:-50], kind="ivfpq")
    assert bytes(faiss.serialize_index(chunked.index)) == bytes(faiss.serialize_index(whole.index))


def test_disk_index_merges_its_shards_into_the_lists_of_one_index_built_in_memory(
        vectors: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "DISK_SHARD", 1100)  # three shards
    monkeypatch.setattr(index_module, "ADD_CHUNK", 500)
    gallery_vectors, queries = vectors[:-50], np.asarray(vectors[-50:])
    disk = VectorIndex.build(gallery_vectors, kind="ivf-disk", lists_file=tmp_path / "index.ivfdata")
    assert disk.kind == "ivf-disk" and disk.ntotal == len(gallery_vectors)
    assert disk.lists_file == (tmp_path / "index.ivfdata").resolve()
    assert not list(tmp_path.glob(".*shards*"))  # the shards are gone once merged

    # The reference: the same index, trained on the same sample, filled in memory in one call.
    reference = faiss.index_factory(64, disk_factory_string(len(gallery_vectors)), faiss.METRIC_INNER_PRODUCT)
    reference.train(training_sample(gallery_vectors))
    reference.add(np.asarray(gallery_vectors))
    for nprobe in (4, reference.nlist):
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        expected = reference.search(queries, 40, params=params)
        found = disk.index.search(queries, 40, params=params)
        assert np.array_equal(found[1], expected[1]) and np.allclose(found[0], expected[0])

    # In memory it holds the centroids and the list table only.
    in_memory = VectorIndex.build(gallery_vectors, kind="ivfpq")
    assert disk.memory_bytes() < in_memory.memory_bytes() / 5
    assert (tmp_path / "index.ivfdata").stat().st_size == len(gallery_vectors) * (64 // 2 + 8)  # codes + ids

    # Saved and moved elsewhere, it finds its lists beside it and answers the same, re-ranked exactly.
    before = disk.search(queries, 16), disk.search_dissimilar(queries, 16)
    disk.save(tmp_path / "index.faiss")
    moved = shutil.move(tmp_path, tmp_path.with_name("moved"))
    loaded = VectorIndex.load(Path(moved) / "index.faiss")
    loaded.attach_vectors(gallery_vectors)
    assert loaded.kind == "ivf-disk" and loaded.lists_file.parent == Path(moved)
    after = loaded.search(queries, 16), loaded.search_dissimilar(queries, 16)
    for (scores_before, ids_before), (scores_after, ids_after) in zip(before, after, strict=True):
        assert np.array_equal(ids_before, ids_after) and np.allclose(scores_before, scores_after)
    exact = np.asarray(gallery_vectors) @ queries.T
    best = np.sort(exact, axis=0)[-16:].mean(axis=0)
    found = np.take_along_axis(exact.T, after[0][1], axis=1).mean(axis=1)
    assert np.abs(found - best).max() < 0.05


def test_disk_gallery_opens_without_reading_its_rows(vectors: np.ndarray, shared_data: Path, tmp_path: Path) -> None:
    coords = geoclip_coordinates(shared_data, 3050)
    gallery = Gallery.from_arrays(tmp_path / "g", vectors, coords[:, 0], coords[:, 1], index_kind="ivf-disk")
    assert gallery.manifest["index_kind"] == "ivf-disk"
    assert gallery.manifest["index_lists_bytes"] == (tmp_path / "g" / "index.ivfdata").stat().st_size
    assert isinstance(gallery.coords, np.memmap) and isinstance(gallery.embeddings, np.memmap)
    scores, rows = gallery.index.search(gallery.embeddings[77], 3)
    # Photos of one spot have near-twin embeddings (the coordinates crowd into cities): one of them is found.
    assert scores[0, 0] == pytest.approx(1.0, abs=2e-3)
    assert scores[0, 0] == pytest.approx(float(np.asarray(gallery.embeddings[rows[0, 0]]) @ gallery.embeddings[77]))
    neighbour = gallery.neighbor(77, 1.0)
    assert (neighbour.id, neighbour.lat, neighbour.place) == ("77", coords[77, 0], gallery.places[77])
    assert gallery.places[-1] == gallery.places[len(gallery) - 1] != ""
    # A gallery written before the offsets file existed is read by counting its lines.
    (tmp_path / "g" / "metadata.offsets.npy").unlink()
    assert list(Gallery.load(tmp_path / "g").ids) == [str(i) for i in range(3050)]


def _manifest_of(photos_dir: Path, names: list[str], path: Path) -> Path:
    rows = [(name, *read_exif_gps(photos_dir / name)) for name in names]
    path.write_text("path,lat,lon\n" + "".join(f"{photos_dir / n},{la},{lo}\n" for n, la, lo in rows))
    return path


def test_merged_parts_equal_a_gallery_built_in_one_go(photos_dir: Path, embedder: Embedder, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    everything = build_gallery(_manifest_of(photos_dir, GEOTAGGED, tmp_path / "all.csv"), tmp_path / "whole",
                               embedder, show_progress=False)
    # Halves on a batch boundary: on CPU an encoder's last bits can depend on which photos share its batch.
    halves = [GEOTAGGED[:4], GEOTAGGED[4:]]
    parts = [build_gallery(_manifest_of(photos_dir, names, tmp_path / f"part{i}.csv"), tmp_path / f"part{i}",
                           embedder, chunk_size=4, show_progress=False) for i, names in enumerate(halves)]
    assert main(["gallery", "merge", str(parts[0].root), str(parts[1].root), "--out", str(tmp_path / "merged")]) == 0
    assert "gallery of 8 photos from 2 parts (flat index)" in capsys.readouterr().out
    merged = Gallery.load(tmp_path / "merged")
    for name in GALLERY_FILES:
        assert (merged.root / name).read_bytes() == (everything.root / name).read_bytes(), name
    for key in ("count", "dim", "index_kind", "encoder", "encoder_probe"):
        assert merged.manifest[key] == everything.manifest[key], key
    assert merged.manifest["parts"] == [str(part.root.resolve()) for part in parts]


def test_merge_refuses_another_encoder_a_part_twice_and_writing_into_a_part(
        photos_dir: Path, embedder: Embedder, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gaea.models.tiny import build_tiny_encoder

    other = Embedder(build_tiny_encoder(tmp_path / "other-encoder", seed=1), batch_size=4)
    assert other.dim == embedder.dim and other.model_name != embedder.model_name
    manifest = _manifest_of(photos_dir, GEOTAGGED[:2], tmp_path / "two.csv")
    ours = build_gallery(manifest, tmp_path / "ours", embedder, show_progress=False)
    theirs = build_gallery(manifest, tmp_path / "theirs", other, show_progress=False)
    with pytest.raises(BadInputError, match="embed the same probe image differently"):
        merge_galleries([ours.root, theirs.root], tmp_path / "merged")
    with pytest.raises(BadInputError, match="named twice"):
        merge_galleries([ours.root, tmp_path / "ours" / "."], tmp_path / "merged")
    with pytest.raises(BadInputError, match="cannot be written into one of its parts"):
        merge_galleries([ours.root], ours.root)
    # The same encoder under another folder name (another machine's copy) merges.
    shutil.copytree(embedder.model_name, tmp_path / "copy-of-encoder")
    copied = build_gallery(manifest, tmp_path / "copied", Embedder(tmp_path / "copy-of-encoder"), show_progress=False)
    assert len(merge_galleries([ours.root, copied.root], tmp_path / "merged")) == 4
    capsys.readouterr()
    assert main(["gallery", "merge", str(ours.root), str(theirs.root), "--out", str(tmp_path / "m2")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "embed the same probe image differently" in error[0]
