"""Goldens of the ORIGINAL facebookresearch/XLM encoder-decoder (``TransformerModel`` with
``is_encoder=False``), run on CPU: tests/golden/original_mt/golden.pt.

The original ``xlm/model/transformer.py`` is executed from a checkout (nothing in it edited) as the
module ``xlm_original_transformer``, its ``.memory`` import (product-key memories, unused here) given
an empty stand-in, so that it does not clash with our own ``xlm`` package. The golden holds a small
random model's ``encoder`` and ``decoder`` state dicts (original names), inputs, the encoder output,
the decoder's scores on a teacher-forced target, and the original ``generate`` / ``generate_beam`` outputs.

usage: XLM_ORIGINAL=/path/to/XLM-checkout python scripts/make_original_mt_golden.py
(one shim, scoped to the call: the uint8 mask its ``generate`` passes to ``masked_fill_`` is given as bool.)
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from argparse import Namespace
from pathlib import Path

import torch

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "original_mt" / "golden.pt"
PARAMS = dict(emb_dim=16, n_layers=2, n_heads=2, dropout=0.0, attention_dropout=0.0, gelu_activation=True,
              sinusoidal_embeddings=False, share_inout_emb=True, use_lang_emb=True, asm=False, n_words=20,
              n_langs=2, eos_index=1, pad_index=2, id2lang={0: "en", 1: "fr"}, lang2id={"en": 0, "fr": 1})


BEAMS = {"beam3": (3, 1.0, False), "beam4_lp0.5_early": (4, 0.5, True), "beam2_lp2": (2, 2.0, False)}


def load_original_transformer(checkout: str | os.PathLike) -> types.ModuleType:
    """The original ``xlm/model/transformer.py`` of ``checkout`` as a module (no sys.path change)."""
    path = Path(checkout) / "xlm" / "model" / "transformer.py"
    if not path.exists():
        path = Path(checkout) / "src" / "model" / "transformer.py"  # older layout
    pkg = types.ModuleType("xlm_original_pkg")
    pkg.__path__ = []
    memory = types.ModuleType("xlm_original_pkg.memory")
    memory.HashingMemory = None
    sys.modules.setdefault("xlm_original_pkg", pkg)
    sys.modules.setdefault("xlm_original_pkg.memory", memory)
    spec = importlib.util.spec_from_file_location("xlm_original_pkg.transformer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def original_models(mod: types.ModuleType) -> tuple[torch.nn.Module, torch.nn.Module]:
    params = Namespace(**PARAMS)
    dico = [f"w{i}" for i in range(params.n_words)]
    enc = mod.TransformerModel(params, dico, is_encoder=True, with_output=True).eval()
    dec = mod.TransformerModel(params, dico, is_encoder=False, with_output=True).eval()
    with torch.no_grad():  # weights far from init, so that decoding varies by source and ends early
        for model in (enc, dec):
            for name, p in model.named_parameters():
                if "layer_norm" not in name:
                    p.normal_(0.0, 0.25)
        dec.pred_layer.proj.bias[params.eos_index] += 0.7
    return enc, dec


def inputs() -> dict[str, torch.Tensor]:
    """Batch-first, framed ``</s> w.. </s>``, right-padded; src in lang 0, tgt in lang 1."""
    g = torch.Generator().manual_seed(1)
    src_len, tgt_len = torch.tensor([7, 4, 6]), torch.tensor([5, 6, 3])
    def batch(lengths: torch.Tensor) -> torch.Tensor:
        x = torch.full((len(lengths), int(lengths.max())), PARAMS["pad_index"])
        for i, n in enumerate(lengths.tolist()):
            x[i, :n] = torch.randint(4, PARAMS["n_words"], (n,), generator=g)
            x[i, 0] = x[i, n - 1] = PARAMS["eos_index"]
        return x
    return {"src": batch(src_len), "src_len": src_len, "tgt": batch(tgt_len), "tgt_len": tgt_len}


@torch.no_grad()
def run_original(mod: types.ModuleType, enc: torch.nn.Module, dec: torch.nn.Module,
                 data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original's forward (time-first, as it takes them) and its two decoding functions."""
    src, src_len, tgt, tgt_len = data["src"].t(), data["src_len"], data["tgt"].t(), data["tgt_len"]
    enc_out = enc("fwd", x=src, lengths=src_len, langs=torch.zeros_like(src), causal=False).transpose(0, 1)
    dec_out = dec("fwd", x=tgt, lengths=tgt_len, langs=torch.ones_like(tgt), causal=True, src_enc=enc_out,
                  src_len=src_len).transpose(0, 1)
    scores = dec.pred_layer.get_scores(dec_out.reshape(-1, PARAMS["emb_dim"])).view(*dec_out.shape[:2], -1)
    fill = torch.Tensor.masked_fill_  # uint8 masks (2019 torch) -> bool, as run_original_cpu.py does
    torch.Tensor.masked_fill_ = lambda self, mask, value: fill(self, mask.bool(), value)
    try:
        greedy, greedy_len = dec.generate(enc_out, src_len, 1, max_len=9)
    finally:
        torch.Tensor.masked_fill_ = fill
    out = {"enc": enc_out, "dec": dec_out, "scores": scores, "greedy": greedy.t().contiguous(),
           "greedy_len": greedy_len}
    for name, (beam_size, lp, early) in BEAMS.items():
        beam, beam_len = dec.generate_beam(enc_out, src_len, 1, beam_size=beam_size, length_penalty=lp,
                                           early_stopping=early, max_len=9)
        out[name], out[name + "_len"] = beam.t().contiguous(), beam_len
    return out


def main() -> None:
    checkout = os.environ.get("XLM_ORIGINAL")
    if not checkout:
        raise SystemExit("set XLM_ORIGINAL to a checkout of facebookresearch/XLM")
    mod = load_original_transformer(checkout)
    torch.manual_seed(0)
    enc, dec = original_models(mod)
    data = inputs()
    out = run_original(mod, enc, dec, data)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": PARAMS, "encoder": enc.state_dict(), "decoder": dec.state_dict(), "inputs": data,
                "outputs": out}, GOLDEN)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
