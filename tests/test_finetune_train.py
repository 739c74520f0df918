"""Fine-tuning end to end on a dataset that `gaea data build` makes from ../shared/data: the loss falls,
answers change, runs resume exactly, adapters round-trip (save / load, merge, old key names), and the
QLoRA path trains on CPU where bitsandbytes imports."""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, TrainerCallback

from finetune.collator import VisionChatCollator
from finetune.config import load_config
from finetune.data import load_samples
from finetune.model import is_merger, is_vision
from finetune.train import main as train
from gaea.cli import main as gaea_main
from gaea.errors import RunInUseError
from gaea.models.adapters import load_adapter
from gaea.models.vlm import load_processor

# Six real photos placed inside the West Oakland OSM extract (the extract has no photos of its own).
OAKLAND_PHOTOS = {
    "DSCN0010.jpg": (37.8070, -122.3000), "DSCN0012.jpg": (37.8080, -122.3010),
    "DSCN0021.jpg": (37.8065, -122.2995), "Kodak_CX7530.jpg": (37.8085, -122.2990),
    "DSCN0025.jpg": (37.8075, -122.3020), "DSCN0027.jpg": (37.8060, -122.3005),
}
# The tiny random model's output head is frozen with tiny weights, which caps its logits near 1.3, so
# the learning run lets LoRA adapt the head as well as every linear layer of the language model.
LM_AND_HEAD = r".*language_model.*\.(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head"


@pytest.fixture(scope="module")
def oakland_dataset(tmp_path_factory, shared_data) -> Path:
    """A QA dataset built by `gaea data build` from real photos and the real West Oakland OSM extract."""
    root = tmp_path_factory.mktemp("oakland")
    manifest = root / "photos.csv"
    manifest.write_text("path,lat,lon\n" + "".join(
        f"{shared_data / 'photos' / name},{lat},{lon}\n" for name, (lat, lon) in OAKLAND_PHOTOS.items()
    ))
    out = root / "dataset"
    code = gaea_main(["data", "build", "--images", str(manifest), "--out", str(out), "--osm-file",
                      str(shared_data / "osm" / "west-oakland.osm.bz2"), "--workers", "1", "--no-hf", "--quiet"])
    assert code == 0 and (out / "qa.jsonl").stat().st_size > 0
    return out


def tiny_config(model: Path, data: Path, output_dir: Path, **overrides):
    """A configuration that trains the tiny model quickly on CPU."""
    values = dict(
        model_name_or_path=str(model), data=str(data), output_dir=str(output_dir), torch_dtype="float32",
        bf16=False, gradient_checkpointing=False, max_pixels=56 * 56, max_length=160, per_device_train_batch_size=2,
        learning_rate=1e-2, warmup_ratio=0.1, logging_steps=1, report_to=["none"], dataloader_num_workers=0,
        train_merger=True, merger_learning_rate=1e-3,
    )
    values.update(overrides)
    return load_config(None, values)


class Capture(TrainerCallback):
    """Keeps the trained model and its optimizer, and can stop the run after `stop_at` steps."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at = stop_at
        self.model = None
        self.optimizer = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_at is not None and state.global_step >= self.stop_at:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.model, self.optimizer = model, optimizer


@pytest.fixture(scope="module")
def trained(tiny_vlm, oakland_dataset, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("learn")
    config = tiny_config(tiny_vlm, oakland_dataset, output_dir, max_steps=30, save_steps=15, eval_ratio=0.05,
                         lora_target_modules=LM_AND_HEAD, report_to=["tensorboard"])
    capture = Capture()
    result = train(config, callbacks=[capture])
    capture.model.eval()
    return config, result, capture


@pytest.fixture(scope="module")
def probe_batch(tiny_vlm, oakland_dataset):
    """A collated batch of real training samples to compare logits on."""
    processor = load_processor(tiny_vlm, max_pixels=56 * 56)
    samples = load_samples(oakland_dataset)
    return VisionChatCollator(processor, max_length=160)([samples[0], samples[7], samples[13]])


def logits_of(model, batch) -> torch.Tensor:
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        return model(**inputs).logits


def base_model(path: Path):
    return AutoModelForImageTextToText.from_pretrained(str(path), dtype=torch.float32).eval()


def test_loss_falls_and_the_adapter_changes_answers(trained, tiny_vlm, oakland_dataset):
    config, result, capture = trained
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert result.global_step == 30 and len(losses) == 30
    first, last = statistics.mean(losses[:5]), statistics.mean(losses[-5:])
    assert last < first - 1.0, f"loss went from {first:.3f} to {last:.3f}"
    assert result.eval_loss is not None and any("eval_loss" in entry for entry in result.log_history)
    assert {p.name for p in Path(config.output_dir).glob("checkpoint-*")} == {"checkpoint-15", "checkpoint-30"}
    assert list(Path(config.output_dir).glob("runs/*/events.out.tfevents.*")), "no TensorBoard log"
    assert (result.final_dir / "adapter_config.json").is_file()
    assert (result.final_dir / "processor_config.json").is_file()

    processor = load_processor(tiny_vlm, max_pixels=56 * 56)
    sample = load_samples(oakland_dataset)[0]
    prompt = processor.apply_chat_template(
        [sample.messages[0]], add_generation_prompt=True, tokenize=False
    )
    from gaea.images import load_image

    inputs = processor(text=[prompt], images=[load_image(sample.images[0])], return_tensors="pt")
    answers = []
    for model in (base_model(tiny_vlm), capture.model):
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        answers.append(processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:]))
    assert answers[0] != answers[1], answers


def test_vision_stays_frozen_and_the_merger_learns_at_its_own_rate(trained, tiny_vlm):
    config, _, capture = trained
    base = dict(base_model(tiny_vlm).named_parameters())
    trained_params = dict(capture.model.get_base_model().named_parameters())
    vision = [name for name in base if is_vision(name)]
    assert vision and all(torch.equal(base[name], trained_params[name]) for name in vision)
    assert not any(p.requires_grad for n, p in capture.model.named_parameters() if is_vision(n))
    merger_copies = [n for n in trained_params if is_merger(n) and "modules_to_save" in n]
    assert merger_copies
    assert any(not torch.equal(trained_params[n], base[n.replace(".modules_to_save.default", "")])
               for n in merger_copies)
    rates = {group["initial_lr"] for group in capture.optimizer.param_groups
             if all(p.requires_grad for p in group["params"])}
    assert rates == {config.learning_rate, config.merger_learning_rate}


def test_saved_adapter_reloads_with_identical_logits(trained, tiny_vlm, probe_batch):
    _, result, capture = trained
    reloaded = load_adapter(base_model(tiny_vlm), result.final_dir)
    assert torch.equal(logits_of(reloaded, probe_batch), logits_of(capture.model, probe_batch))


@pytest.fixture(scope="module")
def short_run(tiny_vlm, oakland_dataset, tmp_path_factory):
    """Four steps with the default LoRA targets (every linear layer of the language model) and the merger."""
    return train(tiny_config(tiny_vlm, oakland_dataset, tmp_path_factory.mktemp("short"), max_steps=4, save_steps=2,
                             max_samples=8, seed=7))


def test_merged_model_matches_base_plus_adapter(short_run, tiny_vlm, probe_batch, tmp_path, capsys):
    result = short_run
    out = tmp_path / "merged"
    assert gaea_main(["finetune", "merge", "--model", str(tiny_vlm), "--adapter", str(result.final_dir),
                      "--out", str(out), "--dtype", "float32"]) == 0
    merged = base_model(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with_adapter = load_adapter(base_model(tiny_vlm), result.final_dir)
    difference = (logits_of(merged, probe_batch) - logits_of(with_adapter, probe_batch)).abs().max()
    assert difference <= 1e-5
    assert (logits_of(base_model(tiny_vlm), probe_batch) - logits_of(merged, probe_batch)).abs().max() > 1e-2
    assert load_processor(out).tokenizer.pad_token is not None
    assert gaea_main(["finetune", "merge", "--model", str(tiny_vlm), "--adapter", str(result.final_dir),
                      "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def _write_old_layout_adapter(adapter: Path, out: Path) -> Path:
    """A copy of `adapter` with the key names of transformers < 4.52 (model.layers.*, visual.*), as GAEA-7B."""
    out.mkdir()
    for item in adapter.iterdir():
        if item.is_file() and item.name != "adapter_model.safetensors":
            (out / item.name).write_bytes(item.read_bytes())
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    old = {key.replace("model.language_model.", "model.").replace("model.model.visual.", "model.visual."): value
           for key, value in weights.items()}
    assert any(".model.layers." in key for key in old) and any(".model.visual." in key for key in old)
    save_file(old, str(out / "adapter_model.safetensors"))
    return out


def test_adapter_with_old_key_names_loads_after_remapping(trained, tiny_vlm, probe_batch, tmp_path, caplog):
    from peft import PeftModel

    _, result, _ = trained
    old = _write_old_layout_adapter(result.final_dir, tmp_path / "old-layout")
    expected = logits_of(load_adapter(base_model(tiny_vlm), result.final_dir), probe_batch)
    try:  # what plain PEFT does with it: fails, or loads nothing
        plain = logits_of(PeftModel.from_pretrained(base_model(tiny_vlm), str(old)), probe_batch)
        assert not torch.allclose(plain, expected)
    except KeyError:
        pass
    with caplog.at_level(logging.WARNING, logger="gaea.models.adapters"):
        remapped = load_adapter(base_model(tiny_vlm), old)
    assert "older module names" in caplog.text
    assert torch.equal(logits_of(remapped, probe_batch), expected)

    converted = tmp_path / "converted"
    assert gaea_main(["finetune", "convert-adapter", "--adapter", str(old), "--out", str(converted)]) == 0
    plain = PeftModel.from_pretrained(base_model(tiny_vlm), str(converted))
    assert torch.equal(logits_of(plain, probe_batch), expected)


def test_resumed_run_ends_where_an_uninterrupted_one_does(short_run, tiny_vlm, oakland_dataset, tmp_path):
    common = dict(max_steps=4, save_steps=2, max_samples=8, seed=7)  # as short_run, which ran straight through
    straight = short_run
    interrupted_config = tiny_config(tiny_vlm, oakland_dataset, tmp_path / "resumed", **common)
    stopped = train(interrupted_config, callbacks=[Capture(stop_at=2)])
    assert stopped.global_step == 2 and (tmp_path / "resumed" / "checkpoint-2").is_dir()

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(interrupted_config.to_dict()))
    assert gaea_main(["finetune", "train", "--config", str(recipe), "--resume-from-checkpoint", "last"]) == 0
    state = yaml.safe_load((tmp_path / "resumed" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    expected = load_file(str(straight.final_dir / "adapter_model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "final" / "adapter_model.safetensors"))
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.allclose(expected[key], resumed[key], atol=1e-6), key
    assert any(not torch.allclose(expected[k], stopped_k) for k, stopped_k in
               load_file(str(tmp_path / "resumed" / "checkpoint-2" / "adapter_model.safetensors")).items())


def test_a_second_run_into_one_output_dir_refuses_and_a_killed_ones_lock_is_taken_over(tiny_vlm, oakland_dataset,
                                                                                         tmp_path):
    output_dir = tmp_path / "busy"
    config = tiny_config(tiny_vlm, oakland_dataset, output_dir, max_steps=200, save_steps=1000, max_samples=4)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config.to_dict()))
    first = subprocess.Popen([sys.executable, "-m", "gaea.cli", "finetune", "train", "--config", str(recipe)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (output_dir / "finetune_config.yaml").exists():  # written once the run holds output_dir
            assert first.poll() is None, first.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the first run did not start in time"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)
        with pytest.raises(RunInUseError, match=rf"{output_dir} is in use by another run \(PID {first.pid}\)"):
            train(tiny_config(tiny_vlm, oakland_dataset, output_dir, max_steps=1, max_samples=4))
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    result = train(tiny_config(tiny_vlm, oakland_dataset, output_dir, max_steps=1, max_samples=4))
    assert result.global_step == 1 and (output_dir / "final" / "adapter_model.safetensors").is_file()


def test_qlora_trains_a_few_steps_on_cpu(tiny_vlm, oakland_dataset, tmp_path):
    try:
        import bitsandbytes as bnb
    except Exception as error:  # any import failure means no 4-bit path on this machine
        pytest.skip(f"QLoRA needs bitsandbytes, which does not import here: {error}")
    config = tiny_config(tiny_vlm, oakland_dataset, tmp_path / "qlora", load_in_4bit=True, max_steps=2,
                         per_device_train_batch_size=1, max_samples=4, learning_rate=1e-3, save_steps=100)
    capture = Capture()
    result = train(config, callbacks=[capture])
    assert result.global_step == 2
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    modules = dict(capture.model.named_modules())
    quantized = [name for name, module in modules.items() if isinstance(module, bnb.nn.Linear4bit)]
    assert quantized and all("language_model" in name for name in quantized)
    assert not any(isinstance(module, bnb.nn.Linear4bit) for name, module in modules.items()
                   if is_vision(name) or is_merger(name) or name.endswith("lm_head"))
    assert (result.final_dir / "adapter_model.safetensors").is_file()


def test_trained_adapter_answers_through_gaea_ask(trained, tiny_vlm, shared_data, capsys):
    import json

    _, result, _ = trained
    question = "Where was this photo taken? Give the city, the country and the coordinates."
    common = ["ask", "--model", str(tiny_vlm), "--image", str(shared_data / "photos" / "DSCN0010.jpg"), "--json",
              "--max-new-tokens", "12", question]
    answers = []
    for extra in ([], ["--adapter", str(result.final_dir)]):
        assert gaea_main(common[:1] + extra + common[1:]) == 0
        answers.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert answers[1]["model"].endswith(str(result.final_dir))
    assert answers[0]["answer"] != answers[1]["answer"]


def test_bf16_base_trains_its_adapter_and_merger_in_float32(tiny_vlm, probe_batch):
    from finetune.model import load_model, upcast_trainable

    config = load_config(None, dict(model_name_or_path=str(tiny_vlm), torch_dtype="bfloat16", train_merger=True,
                                    gradient_checkpointing=False))
    model = load_model(config)
    assert upcast_trainable(model) > 0
    trainable = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}
    assert set(trainable.values()) == {torch.float32}
    assert any("modules_to_save" in name for name in trainable) and any("lora_A" in name for name in trainable)
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**probe_batch).loss
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
