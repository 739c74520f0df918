"""In-process backend: any Hugging Face image-text-to-text model (Qwen2.5-VL first) with an optional
LoRA adapter, on CUDA in bfloat16 or on the CPU in float32, optionally 4-bit quantized."""

from __future__ import annotations

import copy
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from transformers import (
    AutoModelForImageTextToText,
    BitsAndBytesConfig,
    GenerationConfig,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from gaea.errors import BackendError, BadInputError, ConfigError
from gaea.extras import require
from gaea.models.hub import OFFLINE_DEMO, prepare_hub_model
from gaea.models.vlm import load_processor
from gaea.types import GenerationParams, Message

log = logging.getLogger(__name__)
T = TypeVar("T")



def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load_or_explain(what: str, source: str, load: Callable[[], T]) -> T:
    """Run `load`; turn any loading failure into one BackendError line, saying what to do when offline."""
    try:
        return load()
    except (OSError, HfHubHTTPError, ValueError) as error:
        hub_failure = isinstance(error, (OSError, HfHubHTTPError, HFValidationError))
        if Path(source).exists() or not hub_failure:
            raise BackendError(f"cannot load the {what} {source}: {_first_line(error)}") from error
        raise BackendError(
            f"cannot load the {what} {source!r}: the Hugging Face hub could not be reached or the {what} does not "
            f"exist there ({_first_line(error)}); offline, try the tiny demo model: {OFFLINE_DEMO}"
        ) from error


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype | str:
    """None means bfloat16 on CUDA and float32 elsewhere; strings name a torch dtype or "auto"."""
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}; use e.g. bfloat16, float16, float32 or auto")
    return resolved


def _four_bit_config(compute_dtype: torch.dtype | str) -> BitsAndBytesConfig:
    require("bitsandbytes", needed_for="4-bit loading")
    try:
        importlib.import_module("bitsandbytes")
    except ImportError as error:
        raise ConfigError(f"4-bit loading needs bitsandbytes, which does not import here ({error})") from error
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype if isinstance(compute_dtype, torch.dtype) else torch.bfloat16,
    )


class _StopWhenSet(StoppingCriteria):
    """Stops generation once `event` is set: a reader that abandons a stream should not keep the model busy."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> bool:
        return self.event.is_set()


def model_name(model: str, adapter: str | None = None) -> str:
    """The name a backend of `model` (with `adapter` applied) goes by in runs and reports."""
    return str(model) if not adapter else f"{model}+{adapter}"


class TransformersBackend:
    """A vision-language model run in this process with transformers.

    Parameters
    ----------
    model
        Hub id (``Qwen/Qwen2.5-VL-3B-Instruct``) or local folder of an image-text-to-text model.
    adapter
        Optional LoRA adapter (hub id or folder saved by peft), applied on top of `model`.
    device
        ``cuda``, ``cpu``, ``cuda:1``, ...; None picks CUDA when available.
    dtype
        torch dtype or its name; None means bfloat16 on CUDA, float32 on the CPU.
    load_in_4bit
        Quantize the weights to 4-bit NF4 with bitsandbytes (QLoRA-style inference).
    min_pixels, max_pixels
        Bounds on the image area the processor resizes to (fewer pixels: fewer image tokens, faster).

    Raises
    ------
    BackendError
        When the model or adapter cannot be loaded (offline, no such model, broken folder).
    ConfigError
        When `dtype` is unknown or 4-bit is asked without bitsandbytes.
    """

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        load_in_4bit: bool = False,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        self.model_id = str(model)
        self.adapter = str(adapter) if adapter else None
        self.name = model_name(self.model_id, self.adapter)
        self.device = device or _default_device()
        self.dtype = _resolve_dtype(dtype, self.device)
        quantization = _four_bit_config(self.dtype) if load_in_4bit else None
        image_size = {key: value for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if value}
        prepare_hub_model(self.model_id)
        if self.adapter:
            prepare_hub_model(self.adapter, what="adapter")
        self.processor = _load_or_explain("model", self.model_id, lambda: load_processor(self.model_id, **image_size))
        self.model = self._load_model(quantization)
        self._lock = threading.Lock()

    def _load_model(self, quantization: BitsAndBytesConfig | None) -> torch.nn.Module:
        log.info("loading %s on %s (%s%s)", self.model_id, self.device, self.dtype, ", 4-bit" if quantization else "")
        model = _load_or_explain(
            "model",
            self.model_id,
            lambda: AutoModelForImageTextToText.from_pretrained(
                self.model_id, dtype=self.dtype, quantization_config=quantization, device_map={"": self.device}
            ),
        )
        if self.adapter:
            model = self._with_adapter(model, merge=quantization is None)
        return model.eval()

    def _with_adapter(self, model: torch.nn.Module, *, merge: bool) -> torch.nn.Module:
        from gaea.models.adapters import load_adapter

        log.info("applying LoRA adapter %s", self.adapter)
        model = _load_or_explain("adapter", self.adapter, lambda: load_adapter(model, self.adapter))
        # Merged weights generate as fast as the base model; 4-bit weights cannot be merged into.
        return model.merge_and_unload() if merge else model

    def generate(self, messages: list[Message], *, params: GenerationParams | None = None) -> str:
        """The whole answer to the conversation."""
        inputs, config = self._prepare(messages, params)
        with self._lock, torch.inference_mode():
            try:
                output = self.model.generate(**inputs, generation_config=config)
            except (RuntimeError, ValueError) as error:
                raise BackendError(f"{self.name} failed to generate an answer: {_first_line(error)}") from error
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def stream(self, messages: list[Message], *, params: GenerationParams | None = None) -> Iterator[str]:
        """The answer piece by piece while it is generated in a background thread (joined: `generate`'s answer)."""
        inputs, config = self._prepare(messages, params)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        abandoned = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(
                        **inputs,
                        generation_config=config,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_StopWhenSet(abandoned)]),
                    )
            except BaseException as error:  # noqa: BLE001 - handed to the reading thread below
                failures.append(error)
                streamer.end()  # unblock the reader

        worker = threading.Thread(target=run, name="gaea-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            abandoned.set()
            worker.join()
        if failures:
            raise BackendError(f"{self.name} failed to generate an answer: {_first_line(failures[0])}") from failures[0]

    def _prepare(self, messages: list[Message], params: GenerationParams | None) -> tuple[Any, GenerationConfig]:
        """Tokenized conversation (images included) on the model's device, and the generation settings."""
        if not messages:
            raise BadInputError("the conversation is empty: give at least one message")
        params = params or GenerationParams()
        conversation = [message.to_hf() for message in messages]  # decodes the images: BadInputError if bad
        try:
            inputs = self.processor.apply_chat_template(
                conversation,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
        except (ValueError, TypeError, KeyError) as error:  # e.g. a checkpoint without a chat template
            raise BackendError(f"{self.name} cannot format this conversation: {_first_line(error)}") from error
        # Only floating tensors (pixel values) take the model's dtype; token ids stay integers.
        floating_dtype = self.dtype if isinstance(self.dtype, torch.dtype) else self.model.dtype
        inputs = inputs.to(self.model.device, dtype=floating_dtype)
        if params.seed is not None:
            torch.manual_seed(params.seed)  # seeds the CPU and every CUDA device
        return inputs, self._generation_config(params)

    def _generation_config(self, params: GenerationParams) -> GenerationConfig:
        config = copy.deepcopy(self.model.generation_config)
        config.max_new_tokens = params.max_new_tokens
        if params.temperature > 0:
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
        else:
            # Greedy: drop the checkpoint's sampling settings so they neither apply nor warn.
            config.do_sample = False
            config.temperature = None
            config.top_p = None
            config.top_k = None
        return config
