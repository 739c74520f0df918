"""Plain data types shared by every package: chat messages, points on the globe, predictions."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image given as a file path or an already decoded PIL image."""

    image: str | Path | Image.Image

    def pil(self) -> Image.Image:
        """The image as an RGB PIL image (files are checked and decoded by `gaea.images.load_image`)."""
        if isinstance(self.image, Image.Image):
            return self.image if self.image.mode == "RGB" else self.image.convert("RGB")
        from gaea.images import load_image

        return load_image(self.image)

    def data_url(self) -> str:
        """A `data:` URL (JPEG) as OpenAI-compatible servers expect in `image_url` parts."""
        buffer = io.BytesIO()
        self.pil().save(buffer, format="JPEG", quality=92)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


ContentPart = TextPart | ImagePart


@dataclass
class Message:
    """One chat turn: a role and an ordered list of text and image parts."""

    role: Role
    content: list[ContentPart] = field(default_factory=list)

    @classmethod
    def user(cls, text: str = "", *, images: list[Any] | None = None) -> Message:
        """A user turn with its images first, then its text (the order Qwen2.5-VL is trained on)."""
        parts: list[ContentPart] = [ImagePart(image) for image in images or []]
        if text:
            parts.append(TextPart(text))
        return cls("user", parts)

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", [TextPart(text)])

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls("assistant", [TextPart(text)])

    @property
    def text(self) -> str:
        return "\n".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        return [part for part in self.content if isinstance(part, ImagePart)]

    def to_openai(self) -> dict[str, Any]:
        """This turn in the OpenAI chat-completions format, images as `data:` URLs."""
        if all(isinstance(part, TextPart) for part in self.content):
            return {"role": self.role, "content": self.text}
        parts = []
        for part in self.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                parts.append({"type": "image_url", "image_url": {"url": part.data_url()}})
        return {"role": self.role, "content": parts}

    def to_hf(self) -> dict[str, Any]:
        """This turn in the format of Hugging Face chat templates (`processor.apply_chat_template`)."""
        parts = []
        for part in self.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                parts.append({"type": "image", "image": part.pil()})
        return {"role": self.role, "content": parts}


@dataclass(frozen=True)
class GeoPoint:
    """A WGS84 point in decimal degrees."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat) and -90.0 <= self.lat <= 90.0):
            raise ValueError(f"latitude {self.lat!r} is outside [-90, 90]")
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"longitude {self.lon!r} is outside [-180, 180]")

    def __str__(self) -> str:
        return f"{self.lat:.5f}, {self.lon:.5f}"


@dataclass(frozen=True)
class Neighbor:
    """A gallery photo found by retrieval."""

    id: str
    lat: float
    lon: float
    similarity: float
    place: str = ""
    source: str = ""


@dataclass(frozen=True)
class Candidate:
    """A candidate place for a photo, from one source, with the evidence that came with it.

    ``source`` says where it came from: ``lmm-sample`` (an answer of the vision-language model),
    ``neighbour`` (a gallery photo), or a location model's kind (``geoclip``, ``s2-beam``, ``shdd``, ...).
    ``score`` is the source's own confidence (a probability for the location models, the similarity for a
    neighbour), comparable only between candidates of the same source; ``place`` is the nearest known place,
    when looked up; ``reasoning`` is the model's, for an LMM sample; ``photos`` are the gallery photos that
    support it (a neighbour's own photo, or photos near it). ``rank_score`` is the ranker's score, set by
    `gaea.ranking` (higher is better), comparable between every candidate of one photo.
    """

    lat: float
    lon: float
    score: float = 0.0
    source: str = ""
    place: str = ""
    reasoning: str = ""
    photos: tuple[Neighbor, ...] = ()
    rank_score: float | None = None


@dataclass
class Prediction:
    """Where a photo was taken, as the assistant answers it. `lat`/`lon` are None when no location was usable."""

    lat: float | None = None
    lon: float | None = None
    city: str = ""
    country: str = ""
    confidence: float | None = None
    reasoning: str = ""
    raw: str = ""
    similar: list[Neighbor] = field(default_factory=list)
    dissimilar: list[Neighbor] = field(default_factory=list)
    #: The candidate pool, best first: ranked (each with its ``rank_score``) when the Assistant ranks
    #: candidates, else the places a location model proposed, which the prompt showed the model.
    candidates: list[Candidate] = field(default_factory=list)
    #: The ranker that chose the prediction among ``candidates`` ("" when none did), e.g. ``g3`` or
    #: ``lmm (fallback median)`` when the LMM's ranking was unreadable.
    ranker: str = ""

    @property
    def point(self) -> GeoPoint | None:
        return None if self.lat is None or self.lon is None else GeoPoint(self.lat, self.lon)

    @property
    def location(self) -> str:
        """'City, Country' as far as it is known."""
        return ", ".join(part for part in (self.city, self.country) if part)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationParams:
    """Sampling settings understood by every backend. temperature 0 means greedy decoding."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
