"""Bitext retrieval (Tatoeba) and mining (BUCC 2018) with sentence embeddings: no fine-tuning.

Retrieval: each sentence of language ``xx`` looks for its translation among all target sentences
(cosine, or the ratio margin); accuracy is the share found (``acc``: xx -> en, as XTREME reports
Tatoeba; ``acc_rev``: en -> xx).

Mining (Artetxe & Schwenk, 2019, "Margin-based parallel corpus mining"): every sentence's ``k``
nearest neighbours on the other side (cosine of the embeddings) give it a neighbourhood mean; the
score of a pair is ``cos(x, y)`` divided by (``ratio``) or minus (``distance``) the mean of the two
neighbourhood means. Candidates are each source sentence's best-scoring neighbour and each target
sentence's, pooled, sorted by score and kept greedily so that no sentence is used twice (LASER's
``max`` retrieval). The threshold is the score that maximizes F1 against the gold pairs of the
``tune_split`` (BUCC's ``sample``), never chosen on the evaluated split; the pairs of the
``eval_split`` that score above it are the mined bitext (``RUN/mined.{lang}.tsv``), scored when
that split's gold file exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xlm.errors import XLMError
from xlm.io import atomic_write_text
from xlm.retrieval import precision_at_1
from xlm.tasks import results
from xlm.tasks.config import MiningConfig, RetrievalConfig, fill
from xlm.tasks.formats.bitext import LANG3, read_aligned, read_bucc_gold, read_bucc_sentences

BLOCK = 4096  # rows of the similarity matrix computed at once


def knn(x: Tensor, y: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """For each row of ``x`` (unit vectors), the ``k`` most similar rows of ``y``: ``(sims, indices)``."""
    k = min(k, y.shape[0])
    sims, idx = [], []
    for s in range(0, x.shape[0], BLOCK):
        v, i = (x[s : s + BLOCK] @ y.T).topk(k, dim=1)
        sims.append(v)
        idx.append(i)
    return torch.cat(sims), torch.cat(idx)


def mine(x: Tensor, y: Tensor, k: int = 4, margin: str = "ratio") -> list[tuple[float, int, int]]:
    """Candidate pairs ``(score, i, j)``, best first, no sentence used twice (see the module docstring)."""
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    x2y_sim, x2y_idx = knn(x, y, k)
    y2x_sim, y2x_idx = knn(y, x, k)
    x_mean, y_mean = x2y_sim.mean(1), y2x_sim.mean(1)

    def score(sims: Tensor, a_mean: Tensor, b_mean: Tensor) -> Tensor:
        if margin == "ratio":
            return sims / ((a_mean[:, None] + b_mean) / 2)
        if margin == "distance":
            return sims - (a_mean[:, None] + b_mean) / 2
        return sims

    fwd = score(x2y_sim, x_mean, y_mean[x2y_idx])
    bwd = score(y2x_sim, y_mean, x_mean[y2x_idx])
    fb, fj = fwd.max(1)
    bb, bj = bwd.max(1)
    cands = [(float(s), i, int(x2y_idx[i, j])) for i, (s, j) in enumerate(zip(fb.tolist(), fj.tolist()))]
    cands += [(float(s), int(y2x_idx[j, i]), j) for j, (s, i) in enumerate(zip(bb.tolist(), bj.tolist()))]
    cands.sort(key=lambda c: -c[0])
    seen_x, seen_y, out = set(), set(), []
    for s, i, j in cands:
        if i not in seen_x and j not in seen_y:
            seen_x.add(i)
            seen_y.add(j)
            out.append((s, i, j))
    return out


def prf(found: int, predicted: int, gold: int) -> dict[str, float]:
    p = found / predicted if predicted else 0.0
    r = found / gold if gold else 0.0
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * (2 * p * r / (p + r) if p + r else 0.0)}


def best_threshold(cands: list[tuple[float, Any, Any]], gold: set) -> tuple[float, dict[str, float]]:
    """The threshold (between two candidate scores) whose kept candidates have the best F1 on ``gold``."""
    best, best_n, found = (-1.0, 0), 0, 0
    for n, (_, a, b) in enumerate(cands, 1):
        found += (a, b) in gold
        f1 = prf(found, n, len(gold))["f1"]
        if f1 > best[0]:
            best, best_n = (f1, found), n
    if best_n == 0:
        return float("inf"), prf(0, 0, len(gold))
    last = cands[best_n - 1][0]
    nxt = cands[best_n][0] if best_n < len(cands) else last - 1.0
    return (last + nxt) / 2, prf(best[1], best_n, len(gold))


def _load_model(cfg: Any):
    return cfg.model.load(device="cuda" if torch.cuda.is_available() else "cpu")


def _encode(p: Any, cfg: Any, sentences: list[str], lang: str) -> Tensor:
    e = cfg.encoder
    return p.encode(sentences, lang, pooling=e.pooling, batch_size=e.batch_size, tokenized=e.tokenized, layer=e.layer)


def run_mining(cfg: MiningConfig) -> dict[str, Any]:
    d = cfg.data
    p = _load_model(cfg)
    metrics: dict[str, float] = {}
    run_dir = Path(cfg.run.dir)
    for lang in d.langs:
        pair = f"{lang}-{d.target_lang}"
        out = {}
        for split in (d.tune_split, d.eval_split):
            base = Path(d.path) / f"{pair}.{split}"
            xs_ids, xs = read_bucc_sentences(f"{base}.{lang}")
            ys_ids, ys = read_bucc_sentences(f"{base}.{d.target_lang}")
            cands = mine(_encode(p, cfg, xs, lang), _encode(p, cfg, ys, d.target_lang), d.k, d.margin)
            named = [(s, xs_ids[i], ys_ids[j]) for s, i, j in cands]
            gold_path = Path(f"{base}.gold")
            gold = read_bucc_gold(gold_path, xs_ids, ys_ids) if gold_path.exists() else None
            out[split] = (named, gold)
        named, gold = out[d.tune_split]
        if gold is None:
            raise XLMError(f"{Path(d.path) / f'{pair}.{d.tune_split}.gold'}: the tune split needs its gold pairs")
        threshold, tuned = best_threshold(named, gold)
        metrics[f"{d.tune_split}_{lang}_threshold"] = threshold
        metrics.update({f"{d.tune_split}_{lang}_{k}": v for k, v in tuned.items()})
        named, gold = out[d.eval_split]
        kept = [c for c in named if c[0] > threshold]
        atomic_write_text(run_dir / f"mined.{lang}.tsv", "".join(f"{a}\t{b}\t{s:.6f}\n" for s, a, b in kept))
        if gold is not None:
            found = sum((a, b) in gold for _, a, b in kept)
            metrics.update({f"{d.eval_split}_{lang}_{k}": v for k, v in prf(found, len(kept), len(gold)).items()})
    for split in (d.tune_split, d.eval_split):
        results.add_averages(metrics, split, d.langs, ["f1", "precision", "recall"])
    text = results.table(metrics, d.langs, [["f1"], ["precision", "recall"]], f"bitext mining ({d.margin} margin)",
                         splits=(d.tune_split, d.eval_split))
    result = {"task": "mining", "langs": d.langs, "metrics": metrics, "table": text}
    results.save(run_dir, result)
    print(text)
    return result


def run_retrieval(cfg: RetrievalConfig) -> dict[str, Any]:
    d = cfg.data
    p = _load_model(cfg)
    metrics: dict[str, float] = {}
    for lang in d.langs:
        names = {"lang": lang, "lang3": d.lang3.get(lang, LANG3.get(lang, lang)), "tgt": d.target_lang,
                 "tgt3": d.lang3.get(d.target_lang, LANG3.get(d.target_lang, d.target_lang))}
        src, tgt = (Path(d.path) / fill(d.files[k], f"data.files.{k}", **names) for k in ("src", "tgt"))
        xs, ys = read_aligned(src, tgt, d.max_pairs)
        r = precision_at_1(_encode(p, cfg, xs, lang), _encode(p, cfg, ys, d.target_lang), d.margin)
        metrics[f"test_{lang}_acc"], metrics[f"test_{lang}_acc_rev"] = r.src_to_tgt, r.tgt_to_src
        metrics[f"test_{lang}_n"] = r.n
    results.add_averages(metrics, "test", d.langs, ["acc", "acc_rev"])
    title = f"retrieval xx->{d.target_lang} / {d.target_lang}->xx ({'margin' if d.margin else 'cosine'})"
    text = results.table(metrics, d.langs, [["acc", "acc_rev"]], title, splits=("test",))
    result = {"task": "retrieval", "langs": d.langs, "metrics": metrics, "table": text}
    results.save(Path(cfg.run.dir), result)
    print(text)
    return result

