"""Fine-tuning benchmark: the collator's throughput and training throughput / peak memory, tiny model.

    .venv/bin/python benchmarks/finetune.py [--steps 12] [--batch 4] [--collate-batches 20]

Data: a QA dataset made by `gaea data build` from six real photos of ../shared/data placed in the
West Oakland OSM extract. Model: `gaea.models.tiny.build_tiny_vlm` (random Qwen2.5-VL), so the figures
measure our pipeline's overhead, not a 7B model's arithmetic.

1. Collator. Ours: `VisionChatCollator` (one batched processor call; answers located by rendering the
   chat template and diffing texts; image runs aligned in token space). Baseline: the common per-sample
   recipe: one processor call per sample for the whole conversation plus one per assistant turn for its
   prompt prefix (images processed again each time), then manual padding. Same samples, same labels.
2. Training. `GaeaTrainer` steps with LoRA (the recipe's shape), LoRA + gradient checkpointing, QLoRA
   (where bitsandbytes imports) and full fine-tuning of the language model as the baseline: samples/s,
   answer+prompt tokens/s, peak memory (CUDA: max allocated; CPU: peak RSS of a fresh process per setup).

Prints the device first; runs on CUDA when one is present (bf16 there, float32 on CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from finetune.collator import IGNORE_INDEX, VisionChatCollator  # noqa: E402
from finetune.config import load_config  # noqa: E402
from finetune.data import load_samples  # noqa: E402
from finetune.model import load_model, load_processor  # noqa: E402
from finetune.train import GaeaTrainer, training_arguments  # noqa: E402
from gaea.cli import main as gaea_main  # noqa: E402
from gaea.images import load_image  # noqa: E402
from gaea.models.tiny import build_tiny_vlm  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "data"
OAKLAND = {
    "DSCN0010.jpg": (37.8070, -122.3000), "DSCN0012.jpg": (37.8080, -122.3010),
    "DSCN0021.jpg": (37.8065, -122.2995), "Kodak_CX7530.jpg": (37.8085, -122.2990),
    "DSCN0025.jpg": (37.8075, -122.3020), "DSCN0027.jpg": (37.8060, -122.3005),
}
MAX_PIXELS = 112 * 112
MAX_LENGTH = 512


def device_info() -> str:
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"CUDA {props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def build_dataset(root: Path) -> Path:
    manifest = root / "photos.csv"
    manifest.write_text("path,lat,lon\n" + "".join(
        f"{SHARED / 'photos' / name},{lat},{lon}\n" for name, (lat, lon) in OAKLAND.items()))
    out = root / "dataset"
    code = gaea_main(["data", "build", "--images", str(manifest), "--out", str(out), "--osm-file",
                      str(SHARED / "osm" / "west-oakland.osm.bz2"), "--workers", "1", "--no-hf", "--quiet"])
    if code != 0:
        raise SystemExit("gaea data build failed")
    return out


# ------------------------------------------------------------------------------------------------ collator


def naive_collate(processor, samples, *, max_length: int) -> dict[str, torch.Tensor]:
    """Per-sample processor calls: the conversation once, and its prefix before each answer once more."""
    rows, label_rows, extras = [], [], []
    for sample in samples:
        images = [load_image(path) for path in sample.images]
        full = processor(text=[processor.apply_chat_template(sample.messages, tokenize=False)],
                         images=images or None, return_tensors="pt")
        ids = full["input_ids"][0]
        labels = torch.full_like(ids, IGNORE_INDEX)
        for index, message in enumerate(sample.messages):
            if message["role"] != "assistant":
                continue
            shown = sum(p["type"] == "image" for m in sample.messages[:index] for p in m["content"])
            prompt = processor.apply_chat_template(sample.messages[:index], tokenize=False, add_generation_prompt=True)
            through = processor.apply_chat_template(sample.messages[: index + 1], tokenize=False).rstrip()
            start = processor(text=[prompt], images=images[:shown] or None, return_tensors="pt")["input_ids"].shape[1]
            stop = processor(text=[through], images=images[:shown] or None, return_tensors="pt")["input_ids"].shape[1]
            labels[start:stop] = ids[start:stop]
        rows.append(ids[:max_length])
        label_rows.append(labels[:max_length])
        extras.append(full)
    pad = processor.tokenizer.pad_token_id
    input_ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != pad).long(),
        "labels": torch.nn.utils.rnn.pad_sequence(label_rows, batch_first=True, padding_value=IGNORE_INDEX),
        "pixel_values": torch.cat([e["pixel_values"] for e in extras if "pixel_values" in e]),
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in extras if "image_grid_thw" in e]),
    }


def bench_collator(processor, samples, *, batch: int, batches: int) -> None:
    collator = VisionChatCollator(processor, max_length=MAX_LENGTH)
    groups = [[samples[(i * batch + j) % len(samples)] for j in range(batch)] for i in range(batches)]
    ours_batch, naive_batch = collator(groups[0]), naive_collate(processor, groups[0], max_length=MAX_LENGTH)
    same = torch.equal(ours_batch["labels"], naive_batch["labels"])
    timings: dict[str, list[float]] = {"ours": [], "naive": []}
    for group in groups:  # interleaved, so machine load drifts hit both sides alike
        start = time.perf_counter()
        collator(group)
        timings["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        naive_collate(processor, group, max_length=MAX_LENGTH)
        timings["naive"].append(time.perf_counter() - start)
    rate = {name: batch / statistics.median(values) for name, values in timings.items()}
    print(f"\ncollator ({batches} batches of {batch}, median per batch; labels identical to the baseline: {same})")
    print(f"  ours (VisionChatCollator)        {rate['ours']:8.1f} samples/s")
    print(f"  baseline (per-sample processor)  {rate['naive']:8.1f} samples/s")
    print(f"  speed-up                         {rate['ours'] / rate['naive']:8.2f}x")


# ------------------------------------------------------------------------------------------------ training


class CountingCollator(VisionChatCollator):
    """Our collator, counting the real (unpadded) tokens it hands to the model."""

    tokens = 0

    def __call__(self, samples):
        batch = super().__call__(samples)
        CountingCollator.tokens += int(batch["attention_mask"].sum())
        return batch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_training_in_fresh_process(*args, **kwargs) -> dict:
    """`bench_training` in a new process, so each setup's peak memory is its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(bench_training, *args, **kwargs).result()


def bench_training(name: str, model_dir: Path, data: Path, out: Path, *, steps: int, batch: int, **overrides) -> dict:
    cuda = torch.cuda.is_available()
    values = dict(
        model_name_or_path=str(model_dir), data=str(data), output_dir=str(out / name), max_steps=steps,
        per_device_train_batch_size=batch, torch_dtype="bfloat16" if cuda else "float32", bf16=cuda,
        gradient_checkpointing=False, max_pixels=MAX_PIXELS, max_length=MAX_LENGTH, report_to=["none"],
        save_steps=10**6, logging_steps=10**6, train_merger=True, merger_learning_rate=1e-5,
    )
    config = load_config(None, {**values, **overrides})
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    args = training_arguments(config, has_eval=False)
    processor = load_processor(config)
    CountingCollator.tokens = 0
    trainer = GaeaTrainer(
        model=load_model(config), args=args, train_dataset=load_samples(data),
        data_collator=CountingCollator(processor, max_length=MAX_LENGTH),
        merger_learning_rate=config.merger_learning_rate,
    )
    start = time.perf_counter()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - start  # data loading and collation included, as in a real run
    memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    return {
        "name": name, "samples_s": steps * batch / total,
        "tokens_s": CountingCollator.tokens / total, "memory_mb": memory,
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }


def print_training(results: list[dict], baseline: dict) -> None:
    memory_kind = "peak CUDA MiB" if torch.cuda.is_available() else "peak process RSS MiB"
    print(f"\ntraining ({memory_kind}; ratios against full fine-tuning of the language model)")
    print(f"  {'setup':24} {'samples/s':>10} {'tokens/s':>10} {'memory':>10} {'trainable':>10} {'speed':>7}")
    for row in results:
        print(f"  {row['name']:24} {row['samples_s']:10.2f} {row['tokens_s']:10.0f} {row['memory_mb']:10.0f}"
              f" {row['trainable']:10,} {row['samples_s'] / baseline['samples_s']:6.2f}x")


def qlora_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:  # any import failure means no 4-bit path on this machine
        print(f"(QLoRA skipped: bitsandbytes does not import: {error})")
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per training setup")
    parser.add_argument("--batch", type=int, default=4, help="samples per step")
    parser.add_argument("--collate-batches", type=int, default=20, help="batches timed for the collator")
    args = parser.parse_args()
    print(f"device: {device_info()}")
    with tempfile.TemporaryDirectory(prefix="gaea-bench-finetune-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_vlm(root / "tiny-vlm")
        data = build_dataset(root)
        samples = load_samples(data)
        print(f"dataset: {len(samples)} QA samples from `gaea data build` (6 real photos, West Oakland OSM)")
        processor = load_processor(load_config(None, dict(model_name_or_path=str(model_dir), max_pixels=MAX_PIXELS)))
        bench_collator(processor, samples, batch=args.batch, batches=args.collate_batches)
        setups = {"full (baseline)": dict(use_lora=False), "lora": {},
                  "lora + grad checkpointing": dict(gradient_checkpointing=True)}
        if qlora_available():
            setups["qlora (4-bit)"] = dict(load_in_4bit=True)
        results = [
            bench_training_in_fresh_process(name, model_dir, data, root / "runs", steps=args.steps, batch=args.batch,
                                            **extra)
            for name, extra in setups.items()
        ]
        print_training(results, results[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
