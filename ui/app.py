"""The Gradio chat: upload a photo, ask where it is and what is around it, keep talking, see it on a map.

No model code lives here: every answer comes from a `gaea.Assistant` (which also does the retrieval and the
OpenStreetMap grounding). `build_app(assistant)` builds the page; `ui.cli.main` launches it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from gaea.errors import BadInputError, GaeaError  # noqa: E402
from gaea.images import IMAGE_SUFFIXES, load_image  # noqa: E402
from gaea.types import Message, Prediction  # noqa: E402
from ui.map import map_html  # noqa: E402
from ui.security import KEEP_UPLOADS_S  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_QUESTION = "Where was this photo taken?"
#: Formats a browser cannot show: the chat shows a JPEG copy of such a photo instead.
NOT_BROWSER_VIEWABLE = {".heic", ".heif", ".tif", ".tiff"}
#: How many gallery neighbours the Locate summary names.
NEIGHBOURS_NAMED = 5
ERROR_MARK = "⚠️"
#: Least seconds between two updates of a streaming answer. Every update resends the whole chat, work that
#: competes for the GIL with a model generating in this process; four updates a second keep that cost within
#: the noise of benchmarks/serving.py while the answer still visibly grows.
STREAM_INTERVAL_S = 0.25
#: Seconds between two looks of Gradio's queue for new requests, and for progress to report (see _calm_queue).
QUEUE_POLL_S = 0.02
PROGRESS_POLL_S = 0.25
PHOTO_GONE = "This conversation's photo was deleted from the server (uploads are not kept long): upload it again."
#: Photos in the chat as thumbnails: the full photo is a click away (the chat's own full-screen view).
APP_CSS = "#gaea-chat img { max-height: 220px; width: auto; object-fit: contain; }"


@dataclass
class Conversation:
    """What one browser session talks about: its photo (a file in Gradio's upload cache), its turns as the
    model sees them, and the chat as the page shows it (kept here so that API clients send only their message)."""

    photo: str | None = None
    history: list[Message] = field(default_factory=list)
    display: list[dict] = field(default_factory=list)


def _file_path(item: Any) -> str:
    """The local path of one file from a MultimodalTextbox value (a path, or a dict with 'path')."""
    return str(item.get("path") if isinstance(item, dict) else item)


def _readable(error: GaeaError, path: str) -> str:
    """The error without the server-side folder of the upload, which means nothing to the person."""
    return str(error).replace(str(Path(path).parent) + os.sep, "")


def _browser_copy(path: str, image: Image.Image) -> str:
    """A JPEG copy beside the upload of a photo the browser cannot show (HEIC, TIFF), else the photo itself."""
    source = Path(path)
    if source.suffix.lower() not in NOT_BROWSER_VIEWABLE:
        return path
    copy = source.with_name(source.stem + ".preview.jpg")
    if not copy.exists():
        image.save(copy, format="JPEG", quality=90)
    return str(copy)


def _refuse(conversation: Conversation, user_text: str, message: str) -> Conversation:
    """The conversation with this turn answered by an error bubble (and a toast), the model not asked."""
    gr.Warning(message)
    bubble = {"role": "assistant", "content": f"{ERROR_MARK} {message}"}
    conversation.display = [*conversation.display, {"role": "user", "content": user_text}, bubble]
    return conversation


def _with_photo(message: dict, conversation: Conversation) -> tuple[Conversation, Image.Image | None]:
    """The conversation after this message's upload (a new photo starts a new conversation for the model; the
    page keeps showing the earlier one), and the new photo decoded (None when the message brings none).

    Raises BadInputError, without the server's upload folder in its message, for a file that is no usable image."""
    files = message.get("files") or []
    if not files:
        return conversation, None
    path = _file_path(files[-1])
    try:
        image = load_image(path)
    except BadInputError as error:
        raise BadInputError(f"{Path(path).name}: {_readable(error, path).split(': ', 1)[-1]}") from error
    return Conversation(photo=path, display=conversation.display), image


def make_handlers(assistant: Any) -> dict[str, Any]:
    """The page's event handlers as plain functions of the assistant (so that they can be called directly)."""

    def respond(message: dict | None, conversation: Conversation | None) -> Iterator[tuple]:
        message, conversation = message or {}, conversation or Conversation()
        text = (message.get("text") or "").strip()
        cleared = {"text": "", "files": []}
        try:
            conversation, new_photo = _with_photo(message, conversation)
        except BadInputError as error:
            conversation = _refuse(conversation, text or "(upload)", f"Cannot use this file: {error}")
            yield cleared, conversation.display, conversation
            return
        if conversation.photo is None or not Path(conversation.photo).exists():
            refusal = PHOTO_GONE if conversation.photo else "Upload a photo first (JPEG, PNG, WebP or HEIC)."
            conversation = _refuse(Conversation(display=conversation.display), text, refusal)
            yield cleared, conversation.display, conversation
            return
        chat = conversation.display = list(conversation.display)
        question = text or DEFAULT_QUESTION
        if new_photo is not None:
            chat.append({"role": "user", "content": {"path": _browser_copy(conversation.photo, new_photo)}})
        chat += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        earlier = list(conversation.history)
        answer = ""
        try:
            image = new_photo if new_photo is not None else load_image(conversation.photo)
            last_update = 0.0
            for delta in assistant.chat(earlier, image, question):
                answer += delta
                chat[-1] = {"role": "assistant", "content": answer}
                conversation.history = [*earlier, Message.user(question), Message.assistant(answer)]
                if time.monotonic() - last_update >= STREAM_INTERVAL_S:
                    last_update = time.monotonic()
                    yield cleared, chat, conversation
        except GaeaError as error:
            log.warning("chat turn failed: %s", error)
            chat[-1] = {"role": "assistant", "content": f"{answer}\n\n{ERROR_MARK} The model failed: {error}".strip()}
            gr.Warning(f"The model failed: {error}")
        conversation.history = [*earlier, Message.user(question), Message.assistant(answer)]
        yield cleared, chat, conversation

    def locate(message: dict | None, conversation: Conversation | None) -> tuple[str, str]:
        # The photo attached to the message box (not sent yet) is the one the person looks at: it comes first.
        files = (message or {}).get("files") or []
        path = _file_path(files[-1]) if files else (conversation.photo if conversation else None)
        if path is None or not Path(path).exists():
            refusal = PHOTO_GONE if path else "Upload a photo first, then press **Locate**."
            gr.Warning(refusal.replace("**", ""))
            return map_html(None), refusal
        try:
            prediction = assistant.locate(load_image(path))
        except BadInputError as error:
            gr.Warning(f"Cannot use this file: {_readable(error, path)}")
            return map_html(None), f"{ERROR_MARK} Cannot use this file: {_readable(error, path)}"
        except GaeaError as error:
            gr.Warning(f"Locate failed: {error}")
            return map_html(None), f"{ERROR_MARK} Locate failed: {error}"
        return map_html(prediction), prediction_markdown(prediction)

    def clear() -> tuple:
        return {"text": "", "files": []}, [], Conversation(), map_html(None), ""

    return {"respond": respond, "locate": locate, "clear": clear}


def _neighbour_summary(label: str, neighbours: list) -> str:
    if not neighbours:
        return ""
    named = ", ".join(
        f"{n.place or n.id} ({n.lat:.3f}, {n.lon:.3f}; similarity {n.similarity:.2f})"
        for n in neighbours[:NEIGHBOURS_NAMED]
    )
    return f"\n\n**{label}** ({len(neighbours)} on the map): {named}"


def prediction_markdown(prediction: Prediction) -> str:
    """City, country, coordinates, confidence, reasoning and neighbours, as the panel beside the map shows them."""
    if prediction.point is None:
        text = f"{ERROR_MARK} **No usable location** in the model's answer."
        if prediction.raw:
            text += f"\n\n> {prediction.raw.strip()[:600]}"
    else:
        confidence = "unknown" if prediction.confidence is None else f"{prediction.confidence:.0%}"
        text = (
            f"### {prediction.location or 'Unnamed place'}\n\n"
            f"**Coordinates:** {prediction.point} &nbsp;·&nbsp; **Confidence:** {confidence}"
        )
        if prediction.reasoning:
            text += f"\n\n{prediction.reasoning.strip()}"
    text += _candidate_summary(prediction)
    text += _neighbour_summary("Similar gallery photos", prediction.similar)
    text += _neighbour_summary("Dissimilar gallery photos", prediction.dissimilar)
    return text


def _candidate_summary(prediction: Prediction) -> str:
    """The ranked candidates, the chosen one first, with their sources and the ranker's scores."""
    if not prediction.ranker or not prediction.candidates:
        return ""
    named = ", ".join(
        f"{'**' if rank == 1 else ''}{c.place or 'unnamed'} ({c.lat:.3f}, {c.lon:.3f}; {c.source}"
        f"{'' if c.rank_score is None else f', score {c.rank_score:.3f}'}){'**' if rank == 1 else ''}"
        for rank, c in enumerate(prediction.candidates[:NEIGHBOURS_NAMED], 1)
    )
    return f"\n\n**Candidates ranked by {prediction.ranker}** ({len(prediction.candidates)} on the map): {named}"


def example_photos(examples_dir: str | Path | None) -> list[str]:
    """The photos in `examples_dir` (sorted): regular image files, no hidden ones; none when it is None.

    These files, and nothing else of the folder, are what the app may serve from it."""
    if examples_dir is None:
        return []
    folder = Path(examples_dir)
    if not folder.is_dir():
        raise BadInputError(f"--examples {folder}: not a folder")
    photos = sorted(
        str(path.resolve()) for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        and not path.is_symlink() and path.is_file()
    )
    if not photos:
        raise BadInputError(f"--examples {folder}: no photos in it ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return photos


def build_app(
    assistant: Any,
    *,
    examples_dir: str | Path | None = None,
    title: str = "GAEA",
    keep_uploads_s: int = KEEP_UPLOADS_S,
) -> gr.Blocks:
    """The chat page for `assistant` (anything with `chat(history, image, message)` and `locate(image)`).

    Parameters
    ----------
    assistant
        A `gaea.Assistant`.
    examples_dir
        Photos offered as examples; None offers none.
    title
        The page's title.
    keep_uploads_s
        Uploaded photos are deleted once they are this old (checked every tenth of that, at least every minute),
        so that the upload folder does not grow for as long as the app runs.
    """
    handlers = make_handlers(assistant)
    delete_cache = (max(1, min(60, keep_uploads_s // 10)), keep_uploads_s)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=delete_cache) as app:
        gr.Markdown(
            f"# {title}: where was this photo taken?\n"
            "Drop a photo (JPEG, PNG, WebP, HEIC), ask about it, keep talking. **Locate** puts the predicted "
            "place and the most similar / dissimilar gallery photos on the map."
        )
        conversation = gr.State(Conversation())
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Conversation", height=480, elem_id="gaea-chat")
                textbox = gr.MultimodalTextbox(
                    file_types=sorted(IMAGE_SUFFIXES), file_count="single", sources=["upload"],
                    placeholder="Add a photo and ask, e.g. “Where was this taken?” or “What is nearby?”",
                    show_label=False, elem_id="gaea-input",
                )
                with gr.Row():
                    stop = gr.Button("Stop", variant="stop", elem_id="gaea-stop")
                    clear = gr.Button("Clear conversation", elem_id="gaea-clear")
                    locate = gr.Button("Locate", variant="primary", elem_id="gaea-locate")
            with gr.Column(scale=2):
                map_panel = gr.HTML(map_html(None), elem_id="gaea-map")
                details = gr.Markdown(elem_id="gaea-details")
        photos = example_photos(examples_dir)
        if photos:
            gr.Examples([{"text": DEFAULT_QUESTION, "files": [p]} for p in photos], inputs=[textbox], label="Examples")

        # One model answers one request at a time, so chat turns and Locate share one queue.
        chat_event = textbox.submit(
            handlers["respond"], [textbox, conversation], [textbox, chat, conversation],
            api_name="chat", concurrency_id="model", concurrency_limit=1,
        )
        locate_event = locate.click(
            handlers["locate"], [textbox, conversation], [map_panel, details],
            api_name="locate", concurrency_id="model", concurrency_limit=1,
        )
        stop.click(None, None, None, cancels=[chat_event, locate_event], api_visibility="private")
        for clearing in (clear.click, chat.clear):  # the button, and the chat's own trash icon
            clearing(
                handlers["clear"], None, [textbox, chat, conversation, map_panel, details],
                cancels=[chat_event, locate_event], api_visibility="private",
            )
    _calm_queue(app)
    return app


def _calm_queue(app: gr.Blocks) -> None:
    """Poll Gradio's queue 50 times a second instead of 1,000 (and its progress 4 times instead of 100).

    Its event loop otherwise wakes every millisecond, and each wake-up takes the GIL from a model generating
    in this process: a CPU model answered 12-15% slower through the app (benchmarks/serving.py). The cost is
    at most 20 ms before a queued request starts. The attributes are private: where a Gradio version lacks
    them, nothing changes. (Calling `app.queue()` again makes a new queue with the default polling.)
    """
    queue = getattr(app, "_queue", None)
    if hasattr(queue, "sleep_when_free") and hasattr(queue, "progress_update_sleep_when_free"):
        queue.sleep_when_free = QUEUE_POLL_S
        queue.progress_update_sleep_when_free = PROGRESS_POLL_S


def launch_kwargs(
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    examples_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Arguments of `Blocks.launch` that keep the page private by default: loopback only, no share link,
    optional login (failed logins slowed down per client), uploads capped at the largest image accepted, and
    no files served but the app's own (plus the example photos themselves, when there are some)."""
    from starlette.middleware import Middleware

    from gaea.settings import get_settings
    from ui.security import LoginThrottle

    return {
        "server_name": host,
        "server_port": port,
        "auth": auth,
        "share": False,
        "allowed_paths": example_photos(examples_dir),
        "max_file_size": get_settings().max_image_bytes,
        "show_error": True,
        "quiet": True,
        "css": APP_CSS,
        "app_kwargs": {"middleware": [Middleware(LoginThrottle)]} if auth else {},
    }
