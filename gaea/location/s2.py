"""GeoToken-style hierarchical S2 prediction: the cells of a photo's location are predicted coarse to fine,
like next tokens, by a small autoregressive decoder conditioned on the image embedding.

The vocabulary is the quadtree of `gaea.location.s2cells` (cells split until they hold at most N training
photos, as in PlaNet). Step ``t`` of the decoder sees the image embedding and the cells chosen at the ``t``
coarser steps, and scores only the children of the last chosen cell, so every decoded path is a valid
parent -> child chain ending at a leaf; the probability of a leaf is the product of its steps'
probabilities. The decoder is a GRU over cell tokens (GeoToken uses a transformer; with paths of a handful
of tokens a recurrent state decodes incrementally, which keeps beam search and sampling cheap on a CPU).
Decoding:

- ``greedy``: the most likely child at every step (one candidate);
- ``beam``: beam search of width ``beam_width`` for the most probable leaves; candidates are the best
  finished paths;
- ``sample``: ``samples`` paths drawn at ``temperature``; candidates are the leaves drawn most often
  (GeoToken's multi-sample inference, with frequency in place of its reward model).

A candidate is the mean of the leaf's training photos (``candidate: mean``) or the cell centre (``centre``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gaea.errors import ConfigError
from gaea.location.base import LocationModel
from gaea.location.s2cells import build_cell_tree, paths_to_leaves

S2_DEFAULTS: dict[str, Any] = {
    "min_level": 2,
    "level_step": 2,
    "max_level": 12,
    "max_photos": 50,       # a cell with more training photos than this is split
    "hidden": 256,
    "layers": 2,
    "dropout": 0.1,
    "candidate": "mean",    # mean of the leaf's training photos, or "centre" of the cell
    # set from the training coordinates:
    "nodes": 0,
    "top_nodes": 0,
    "depth": 0,
    "max_children": 0,
}

DECODINGS = ("greedy", "beam", "sample")


class S2Model(LocationModel):
    """The hierarchical S2 cell decoder (see the module docstring)."""

    kind = "s2"
    predict_options = {"decoding": "beam", "beam_width": 4, "samples": 16, "temperature": 1.0, "seed": 0}

    def __init__(self, config: dict[str, Any]):
        super().__init__({**S2_DEFAULTS, **config})
        c = self.config
        if c["candidate"] not in ("mean", "centre"):
            raise ConfigError(f"s2 model: candidate {c['candidate']!r}: choose mean or centre")
        nodes, hidden = int(c["nodes"]), int(c["hidden"])
        self.register_buffer("cell_ids", torch.zeros(nodes, dtype=torch.int64))
        self.register_buffer("parents", torch.full((nodes,), -1, dtype=torch.int64))
        self.register_buffer("levels", torch.zeros(nodes, dtype=torch.int64))
        self.register_buffer("top_nodes", torch.zeros(int(c["top_nodes"]), dtype=torch.int64))
        self.register_buffer("child_table", torch.full((nodes, max(int(c["max_children"]), 1)), -1, dtype=torch.int64))
        self.register_buffer("points", torch.zeros(nodes, 2))
        self.condition = nn.Sequential(nn.Linear(self.embedding_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.start = nn.Parameter(torch.zeros(hidden))
        self.tokens = nn.Embedding(max(nodes, 1), hidden)
        self.decoder = nn.GRU(2 * hidden, hidden, int(c["layers"]), batch_first=True,
                              dropout=float(c["dropout"]) if int(c["layers"]) > 1 else 0.0)
        self.norm = nn.LayerNorm(hidden)
        self.output = nn.Embedding(max(nodes, 1), hidden)
        self.output_bias = nn.Embedding(max(nodes, 1), 1)
        for embedding in (self.tokens, self.output):
            nn.init.normal_(embedding.weight, std=0.02)  # unit-variance embeddings would saturate the softmax
        nn.init.zeros_(self.output_bias.weight)

    @classmethod
    def from_coordinates(cls, config: dict[str, Any], lat: np.ndarray, lon: np.ndarray) -> tuple[S2Model, np.ndarray]:
        """A model whose vocabulary is built from the training coordinates, and each point's token path."""
        c = {**S2_DEFAULTS, **config}
        tree, leaves = build_cell_tree(lat, lon, min_level=int(c["min_level"]), level_step=int(c["level_step"]),
                                       max_level=int(c["max_level"]), max_photos=int(c["max_photos"]))
        children = tree.children_table()
        top, children = children[-1][children[-1] >= 0], children[:-1, :max((children[:-1] >= 0).sum(1).max(), 1)]
        depth = tree.depth()
        model = cls({**c, "nodes": len(tree), "top_nodes": len(top), "depth": depth, "max_children": children.shape[1]})
        model.cell_ids.copy_(torch.from_numpy(tree.cell_ids))
        model.parents.copy_(torch.from_numpy(tree.parents))
        model.levels.copy_(torch.from_numpy(tree.levels))
        model.top_nodes.copy_(torch.from_numpy(top))
        model.child_table.copy_(torch.from_numpy(children))
        model.points.copy_(torch.from_numpy(tree.means if c["candidate"] == "mean" else tree.centres).float())
        return model, paths_to_leaves(tree.parents, leaves, depth)

    @property
    def depth(self) -> int:
        return int(self.config["depth"])

    # -- the decoder --------------------------------------------------------------------------------

    def start_state(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the image's conditioning vector, the decoder's initial state) for a batch of embeddings."""
        condition = self.condition(embeddings)
        return condition, torch.tanh(condition)[None].repeat(int(self.config["layers"]), 1, 1).contiguous()

    def advance(self, condition: torch.Tensor, state: torch.Tensor,
                previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoder step: the output for the next cell and the new state, given the cell chosen last
        (None at the first step)."""
        token = self.start.expand(len(condition), -1) if previous is None else self.tokens(previous)
        output, state = self.decoder(torch.cat([token, condition], dim=-1)[:, None], state)
        return self.norm(output[:, 0]), state

    def child_logits(self, states: torch.Tensor, parents: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the children of ``parents`` (node numbers; None: the top nodes, the children of the
        root) and the children themselves, (... x children) each; padding children are -1 and score -inf."""
        if parents is None:
            children = self.top_nodes.expand(*states.shape[:-1], -1)
            logits = states @ self.output(self.top_nodes).T + self.output_bias(self.top_nodes)[:, 0]
            return logits, children
        children = self.child_table[parents]
        safe = children.clamp(min=0)
        logits = torch.matmul(self.output(safe), states[..., None])[..., 0] + self.output_bias(safe)[..., 0]
        return logits.masked_fill(children < 0, float("-inf")), children

    def path_loss(self, embeddings: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every step of the true token paths (b x depth, -1 after the leaf), teacher
        forced."""
        condition, state = self.start_state(embeddings)
        previous = torch.cat([self.start.expand(len(paths), 1, -1), self.tokens(paths[:, :-1].clamp(min=0))], dim=1)
        inputs = torch.cat([previous, condition[:, None].expand(-1, paths.shape[1], -1)], dim=-1)
        states = self.norm(self.decoder(inputs, state)[0])
        top_logits, top = self.child_logits(states[:, 0], None)
        total = F.cross_entropy(top_logits, (top == paths[:, :1]).float().argmax(-1), reduction="sum")
        valid = paths[:, 1:] >= 0
        if valid.any():
            logits, children = self.child_logits(states[:, 1:][valid], paths[:, :-1][valid])
            targets = (children == paths[:, 1:][valid][:, None]).float().argmax(dim=-1)
            total = total + F.cross_entropy(logits, targets, reduction="sum")
        return total / (paths >= 0).sum()

    # -- decoding -----------------------------------------------------------------------------------

    def _predict_batch(self, x: torch.Tensor, k: int, *, decoding: str, beam_width: int, samples: int,
                       temperature: float, seed: int) -> tuple[Any, Any, Any]:
        if decoding not in DECODINGS:
            raise ConfigError(f"s2 model: decoding {decoding!r}: choose {', '.join(DECODINGS)}")
        if decoding == "sample":
            leaves, scores = self.sample(x, k, samples=int(samples), temperature=float(temperature), seed=int(seed))
        else:
            width = 1 if decoding == "greedy" else max(int(beam_width), k)
            paths, logp = self.beam_search(x, width)
            leaves, scores = self.leaf_of(paths)[:, :k], logp[:, :k].exp()
        points = self.points[leaves.clamp(min=0)]
        missing = leaves < 0
        lat = points[..., 0].masked_fill(missing, float("nan"))
        lon = points[..., 1].masked_fill(missing, float("nan"))
        return lat.cpu().numpy(), lon.cpu().numpy(), scores.masked_fill(missing, float("nan")).cpu().numpy()

    def candidate_source(self, options: dict[str, Any]) -> str:
        return f"s2-{options['decoding']}"

    def leaf_of(self, paths: torch.Tensor) -> torch.Tensor:
        """The last node of each path (... x depth, -1 padded; -1 for an empty path)."""
        lengths = (paths >= 0).sum(-1, keepdim=True)
        return paths.gather(-1, (lengths - 1).clamp(min=0))[..., 0].masked_fill(lengths[..., 0] == 0, -1)

    def beam_search(self, x: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``width`` most probable root-to-leaf paths per photo, best first: paths (b x width x depth,
        -1 padded; empty where fewer exist) and their log-probabilities (b x width). Width 1 is greedy
        decoding. Extending a path can only lower its probability, so once the ``width`` best all end at a
        leaf no unfinished path can overtake them: the search is exact for that width."""
        b = len(x)
        condition, state = self.start_state(x)
        output, state = self.advance(condition, state, None)
        logits, top = self.child_logits(output, None)
        chosen = logits.log_softmax(-1).topk(min(width, logits.shape[-1]), dim=-1)
        score = torch.full((b, width), float("-inf"), device=x.device)
        score[:, :chosen.values.shape[1]] = chosen.values
        current = torch.full((b, width), -1, dtype=torch.int64, device=x.device)
        current[:, :chosen.indices.shape[1]] = top.gather(1, chosen.indices)
        paths = torch.full((b, width, self.depth), -1, dtype=torch.int64, device=x.device)
        paths[:, :, 0] = current
        condition = condition.repeat_interleave(width, dim=0)
        state = state.repeat_interleave(width, dim=1)
        for step in range(1, self.depth):
            finished = (current < 0) | (self.child_table[current.clamp(min=0)][..., 0] < 0)
            if finished.all():
                break
            output, state = self.advance(condition, state, current.clamp(min=0).flatten())
            logits, children = self.child_logits(output.view(b, width, -1), current.clamp(min=0))
            extended = (score[..., None] + logits.log_softmax(-1)).masked_fill(finished[..., None] | (children < 0),
                                                                                float("-inf"))
            kept = score.masked_fill(~finished, float("-inf"))[..., None]
            score, picked = torch.cat([extended, kept], dim=-1).view(b, -1).topk(width, dim=-1)
            columns = children.shape[-1] + 1
            beam, column = picked // columns, picked % columns
            paths = paths.gather(1, beam[..., None].expand(-1, -1, self.depth)).clone()
            state = state.view(state.shape[0], b, width, -1).gather(
                2, beam[None, ..., None].expand(state.shape[0], -1, -1, state.shape[-1])).view(state.shape)
            stays = column == columns - 1
            child = children.gather(1, beam[..., None].expand(-1, -1, columns - 1)).gather(
                2, column.clamp(max=columns - 2)[..., None])[..., 0]
            current = torch.where(stays, current.gather(1, beam), child)
            paths[:, :, step] = torch.where(stays, paths[:, :, step], child)
        return paths.masked_fill(~torch.isfinite(score)[..., None], -1), score

    def sample(self, x: torch.Tensor, k: int, *, samples: int, temperature: float,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` paths per photo drawn at ``temperature`` (reproducibly: from ``seed``); the ``k`` leaves
        drawn most often (ties: the more probable first) and the share of draws each got. Missing leaves are -1."""
        if samples < 1 or temperature <= 0:
            raise ConfigError(f"s2 sampling needs samples >= 1 and temperature > 0, got {samples} and {temperature}")
        generator = torch.Generator(device=x.device).manual_seed(seed)
        b = len(x)
        condition, state = self.start_state(x.repeat_interleave(samples, dim=0))
        current = torch.full((b * samples,), -1, dtype=torch.int64, device=x.device)
        logp = torch.zeros(b * samples, device=x.device)
        for step in range(self.depth):
            previous = None if step == 0 else current
            live = torch.ones_like(current, dtype=torch.bool) if step == 0 else self.child_table[current][:, 0] >= 0
            if not live.any():
                break
            output, state = self.advance(condition, state, previous)
            logits, children = self.child_logits(output, previous)
            logits = logits.masked_fill(~live[:, None], 0.0)  # rows already at a leaf draw nothing
            choice = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
            logp = logp + torch.where(live, logits.log_softmax(-1).gather(1, choice[:, None])[:, 0], 0.0)
            current = torch.where(live, children.gather(1, choice[:, None])[:, 0], current)
        return _most_frequent(current.view(b, samples), logp.view(b, samples), k, len(self.cell_ids))


def _most_frequent(leaves: torch.Tensor, logp: torch.Tensor, k: int, nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the ``k`` most frequent of the sampled leaves (ties: the more probable first) and their
    share of the draws; -1 where a row drew fewer than ``k`` distinct leaves."""
    b, samples = leaves.shape
    counts = torch.zeros(b, nodes, device=leaves.device).scatter_add_(1, leaves, torch.ones_like(logp))
    best = torch.full((b, nodes), float("-inf"), device=leaves.device).scatter_reduce_(1, leaves, logp, "amax")
    # A leaf's probability is below 1, so half of it breaks ties without ever outweighing one more draw.
    key = torch.where(counts > 0, counts + 0.5 * best.exp(), torch.full_like(counts, -1.0))
    top = key.topk(min(k, nodes), dim=-1)
    chosen = torch.where(top.values > 0, top.indices, torch.full_like(top.indices, -1))
    return chosen, counts.gather(1, top.indices) / samples
