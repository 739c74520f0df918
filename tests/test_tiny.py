"""The tiny offline models load through the same paths as real checkpoints and produce text and embeddings."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageTextToText, CLIPModel

from gaea.models.vlm import ImageOnlyQwenVLProcessor, load_processor


def test_tiny_vlm_generates_for_a_real_photo(tiny_vlm, photos_dir):
    processor = load_processor(tiny_vlm)
    assert isinstance(processor, ImageOnlyQwenVLProcessor)
    assert json.loads((tiny_vlm / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    assert model.config.model_type == "qwen2_5_vl"
    image = Image.open(photos_dir / "DSCN0010.jpg")
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Where?"}]}]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    image_tokens = (inputs["input_ids"] == model.config.image_token_id).sum().item()
    assert image_tokens == inputs["image_grid_thw"].prod().item() // 4  # one token per 2x2 merged patch
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_tiny_encoder_embeds_images(tiny_encoder, photos_dir):
    model = CLIPModel.from_pretrained(tiny_encoder)
    processor = AutoImageProcessor.from_pretrained(tiny_encoder)
    images = [Image.open(photos_dir / name).convert("RGB") for name in ("DSCN0010.jpg", "Kodak_CX7530.jpg")]
    with torch.no_grad():
        features = model.get_image_features(**processor(images=images, return_tensors="pt"))
    features = getattr(features, "pooler_output", features)
    assert features.shape == (2, 32)
    assert not torch.allclose(features[0], features[1])


def test_tiny_model_command_builds_both(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gaea.cli", "tiny-model", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "vlm" / "model.safetensors").exists()
    assert (tmp_path / "encoder" / "preprocessor_config.json").exists()
    assert str(tmp_path / "vlm") in result.stdout
