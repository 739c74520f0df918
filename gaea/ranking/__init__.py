"""Candidates and ranking: G3's and GeoRanker's two stages.

Stage one gathers candidate places for a photo from every configured source (`gaea.ranking.candidates`):
the vision-language model's sampled answers (``lmm``), the gallery's most similar photos (``neighbours``)
and a location model's top places (``location-model``), de-duplicated within a radius. Stage two ranks
them, one interface for every ranker: ``rank(image, candidates) -> candidates with scores, best first``:

- ``median`` (`gaea.ranking.median`): the candidate nearest the geometric median of the pool (the baseline);
- ``g3`` (`gaea.ranking.g3`): cosine of the photo's embedding and each candidate's location embedding
  in a GeoCLIP model (G3's selection);
- ``lmm`` (`gaea.ranking.lmm`): any backend asked, zero-shot, to rank a numbered list of the candidates
  with their evidence (GeoRanker's prompt without its training), a fallback ranker on an unreadable reply;
- ``trained`` (`gaea.ranking.trained`): GeoRanker's ranker, a vision-language model with LoRA and a scalar
  head, trained by `gaea finetune train --task rank` (`finetune.rank`) with the multi-order distance loss.
"""

from gaea.ranking.base import RANKERS, Ranker, Ranking, make_ranker, ranked
from gaea.ranking.candidates import CANDIDATE_SOURCES, DEDUPE_KM, gather_candidates, parse_sources
from gaea.ranking.median import MedianRanker, geometric_median

__all__ = [
    "CANDIDATE_SOURCES",
    "DEDUPE_KM",
    "RANKERS",
    "MedianRanker",
    "Ranker",
    "Ranking",
    "gather_candidates",
    "geometric_median",
    "parse_sources",
    "make_ranker",
    "ranked",
]
