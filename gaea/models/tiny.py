"""Tiny random-weight models built offline in seconds, for tests and the offline demo.

They have the real architectures (Qwen2.5-VL for chat, CLIP for gallery embeddings) and load through
the same `from_pretrained` paths as the real checkpoints, so every code path runs; their answers are
gibberish, since the weights are random.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# The Qwen2-VL chat format: images become <|vision_start|><|image_pad|><|vision_end|>, which the
# processor expands to one <|image_pad|> per merged image patch.
QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# A few strings in the domain, so the tokenizer's merges look like words of our answers.
_TRAINING_TEXT = [
    "Where was this photo taken? This photo was taken in Arezzo, Italy, in Tuscany.",
    '{"latitude": 43.4674, "longitude": 11.8851, "city": "Arezzo", "country": "Italy"}',
    "Is there a train station nearby? Yes, about 350 m to the north-east.",
    "People drive on the left side of the road in Kenya and on the right side in Germany.",
    "A. cafe B. school C. post office D. museum. The answer is B.",
    "The quick brown fox jumps over the lazy dog 0123456789 -+.,:;!?()[]{}",
]


def build_tiny_tokenizer(*, vocab_size: int = 512):
    """A byte-level BPE tokenizer with Qwen's special tokens, trained on a few strings."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TRAINING_TEXT * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=QWEN_VL_CHAT_TEMPLATE,
        padding_side="left",
    )


def build_tiny_vlm(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build and save a tiny random Qwen2.5-VL model with its image-only processor; returns `out_dir`.

    About 0.2 M parameters; loads with `AutoModelForImageTextToText.from_pretrained(out_dir)` and
    `gaea.models.vlm.load_processor(out_dir)`. Images are resized to at most 112 x 112 pixels.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from gaea.models.vlm import ImageOnlyQwenVLProcessor

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # mrope sections (temporal, height, width) must add up to head_dim / 2 = 8.
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 56,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=112 * 112)
    processor = ImageOnlyQwenVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_VL_CHAT_TEMPLATE
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    log.info("tiny vision-language model saved to %s", out_dir)
    return out_dir


def build_tiny_encoder(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build and save a tiny random CLIP model with its image processor; returns `out_dir`.

    Loads with `CLIPModel.from_pretrained(out_dir)` and `AutoImageProcessor.from_pretrained(out_dir)`;
    image embeddings have 32 dimensions.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out_dir = Path(out_dir)
    config = CLIPConfig(
        text_config={"vocab_size": 512, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"image_size": 64, "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2},
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    log.info("tiny image encoder saved to %s", out_dir)
    return out_dir
