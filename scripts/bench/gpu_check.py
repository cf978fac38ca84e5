#!/usr/bin/env python
"""The GPU check of issue 13: one table, each row printed (and appended to ``--out``) once measured.

Rows: bare training step of ours and of ``transformers.XLMWithLMHeadModel`` (tokens/s, MFU, peak
memory) in bf16 and fp16, compiled or not; the whole ``Trainer`` loop against the bare step on the
same shapes (loop overhead), eager and compiled (by regions, the default ``train.compile_scope``, and
as a whole model); DDP and FSDP2 when several GPUs are present; short bf16 and fp16 runs
whose loss must fall. ``--smoke`` runs a tiny version of every row on whatever device there is
(CPU: fp32, the compile rows with the ``eager`` backend: graphs captured, not compiled) in about a minute.

MFU = (6 N T + 12 L S d T + 6 d V P) / (step time x peak): N = 12 L d^2 non-embedding parameters,
T tokens, S sequence length, P predicted positions, V vocabulary, peak the datasheet's dense bf16
FLOP/s of the device (``xlm.distributed.PEAK_TFLOPS``; 989 TFLOP/s for H100/H200 SXM).

    bash scripts/bench/gpu_check.sh [--smoke] [--out results.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[0] = str(ROOT)  # not scripts/bench/: its tokenize.py would shadow the standard library's

import logging  # noqa: E402  (after the path fix: logging's traceback reading imports tokenize)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from xlm.config import ModelConfig  # noqa: E402
from xlm.distributed import PEAK_TFLOPS  # noqa: E402
from xlm.model import TransformerModel  # noqa: E402

HEADER = "| row | tokens/s | MFU | peak memory | note |\n|---|---|---|---|---|"


def mfu(tokens_per_s: float, d: int, layers: int, seq: int, vocab: int, pred_fraction: float, peak: float) -> float:
    """The issue's formula, per second: (6 N T + 12 L S d T + 6 d V P) / peak, N = 12 L d^2."""
    n = 12 * layers * d * d
    flops = 6 * n * tokens_per_s + 12 * layers * seq * d * tokens_per_s + 6 * d * vocab * pred_fraction * tokens_per_s
    return flops / peak if peak else float("nan")


def device_peak(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for frag, (half, _) in PEAK_TFLOPS.items():
        if frag in name:
            return half * 1e12
    return 0.0


class Table:
    def __init__(self, out: Path | None, budget_s: float):
        self.out = out
        self.deadline = time.monotonic() + budget_s
        self.emit(HEADER)

    def emit(self, line: str) -> None:
        print(line, flush=True)
        if self.out:
            with open(self.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def late(self, name: str) -> bool:
        """True (and a row saying so) once the time budget is spent: the table stays complete."""
        if time.monotonic() < self.deadline:
            return False
        self.row(name, None, None, None, "skipped: over the time budget")
        return True

    def row(self, name: str, tps: float | None, mfu_value: float | None, mem: float | None, note: str = "") -> None:
        cell = lambda v, fmt: "n/a" if v is None or v != v else fmt.format(v)  # noqa: E731
        self.emit(f"| {name} | {cell(tps, '{:,.0f}')} | {cell(mfu_value, '{:.1%}')} | {cell(mem, '{:.2f} GiB')} "
                  f"| {note} |")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step(args, device, which: str, precision: str, compiled: bool,
              vocab: int | None = None, scope: str = "model") -> tuple[float, float | None]:
    """Tokens/s of forward + loss on the predicted positions + backward + fused AdamW, and peak GiB.

    ``scope`` (ours, compiled): ``model`` compiles the whole loss function, ``layers`` the regions the
    trainer compiles by default (:mod:`xlm.train.compile`)."""
    torch.manual_seed(0)
    d, layers, heads, bs, seq = args.dim, args.layers, args.heads, args.batch, args.seq
    vocab = vocab or args.vocab
    if which == "ours":
        model = TransformerModel(ModelConfig(emb_dim=d, n_layers=layers, n_heads=heads, max_positions=512),
                                 vocab, 2).to(device)
    else:
        from transformers import XLMConfig, XLMWithLMHeadModel

        model = XLMWithLMHeadModel(XLMConfig(vocab_size=vocab, emb_dim=d, n_layers=layers, n_heads=heads,
                                             n_langs=2, max_position_embeddings=512)).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(14, vocab, (bs, seq), generator=g)
    mask = torch.rand(bs, seq, generator=g) < 0.15
    index, targets = mask.flatten().nonzero().flatten().to(device), x[mask].to(device)
    inputs, labels = x.masked_fill(mask, 5).to(device), x.masked_fill(~mask, -100).to(device)
    langs = torch.zeros(bs, seq, dtype=torch.long, device=device)

    def loss_ours():
        h = model(inputs, langs=langs, padded=False)
        return F.cross_entropy(model.predict(h.reshape(-1, d).index_select(0, index)).float(), targets)

    if which == "ours" and compiled and scope == "layers":
        from xlm.train.compile import Region, compile_regions
        from xlm.train.loss import output_loss

        compile_regions(model, args.backend)
        head = Region(output_loss, args.backend)

        def loss_ours():  # noqa: F811 (the regional version of the same loss)
            return head(model, model(inputs, langs=langs, padded=False), index, targets) / len(targets)

    def loss_hf():
        return model(input_ids=inputs, langs=langs, labels=labels).loss

    fn = loss_ours if which == "ours" else loss_hf
    if compiled and not (which == "ours" and scope == "layers"):
        fn = torch.compile(fn, backend=args.backend)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = fn()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(args.warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - t0) / args.steps
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return bs * seq / seconds, mem


def _folder(tmp: Path, n_train: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from training_data import slice_folder

    return slice_folder(tmp / "data", n_train=n_train, n_eval=20)


def run_trainer(args, data: Path, tmp: Path, name: str, overrides: list[str], nproc: int = 1) -> list[dict]:
    """``train.py`` as a user runs it (torchrun when ``nproc > 1``); returns its train records."""
    run = tmp / name
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"] if nproc > 1 else [
        sys.executable]
    cmd += [str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"), f"run.dir={run}",
            f"data.path={data}", "run.tensorboard=false", "train.eval_at_start=false",
            f"model.emb_dim={args.dim}", f"model.n_layers={args.layers}", f"model.n_heads={args.heads}",
            "model.max_positions=512", f"data.batch_size={args.batch}", f"data.bptt={args.seq}",
            "train.validation_metric=", *([] if any(o.startswith("objectives.mlm=") for o in overrides) else
                                          ["objectives.mlm=[en,fr,en-fr]"]), *overrides]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode:
        raise RuntimeError(f"{name}: train.py failed: {p.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("kind") == "train" or ("loss" in r and "tokens_per_s" in r)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, few steps, any device (~1 minute on CPU)")
    ap.add_argument("--out", type=Path, default=None, help="also append the table to this file")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    shapes = dict(dim=1024, layers=6, heads=8, vocab=64139, batch=32, seq=256, warmup=5, steps=20,
                  loop_steps=120, run_steps=60)
    if args.smoke:
        shapes = dict(dim=128, layers=2, heads=4, vocab=8000, batch=8, seq=64, warmup=1, steps=3,
                      loop_steps=12, run_steps=12)
    for k, v in shapes.items():
        setattr(args, k, v)
    args.backend = "inductor" if cuda else "eager"  # CPU: dynamo's graphs only (inductor's C++ builds take minutes)
    precisions = ["bf16", "fp16"] if cuda else ["fp32"]
    peak = device_peak(device)
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    table = Table(args.out, 1e9 if args.smoke else 270)  # gpu_check.sh stops everything at 300 s
    table.emit(f"| device: {name}, peak {peak / 1e12:.0f} TFLOP/s | {args.dim}x{args.layers} model, batch "
               f"{args.batch}x{args.seq}, vocab {args.vocab} | {'smoke' if args.smoke else 'full'} | | "
               + ("smoke: 3 timed steps a row check that each row runs; its figures are not measurements |"
                  if args.smoke else "|"))
    pred = 0.15
    bare = {}
    tmp = Path(tempfile.mkdtemp(prefix="xlm-gpu-check-"))
    data = _folder(tmp, 1000 if args.smoke else 3000)
    v_data = len_vocab(data)
    main_precision = precisions[0]
    common = [f"run.log_every={max(args.loop_steps // 4, 1)}", f"train.eval_every={args.loop_steps}",
              f"train.save_every={args.loop_steps}", f"train.max_steps={args.loop_steps}",
              f"train.precision={main_precision}", f"train.compile_backend={args.backend}"]
    def bare_rows(compiled: bool) -> None:
        for precision in precisions:
            for which in ("ours", "hf"):
                label = f"bare step {which} {precision}{' compiled' if compiled else ''}"
                if table.late(label):
                    continue
                quiet = logging.getLogger("torch._dynamo")  # HF's graph break warns at length mid-table
                level = quiet.level
                if which == "hf" and compiled:
                    quiet.setLevel(logging.ERROR)
                try:
                    tps, mem = bare_step(args, device, which, precision, compiled)
                except Exception as e:  # a row that fails says why; the others still run
                    table.row(label, None, None, None, f"failed: {type(e).__name__}: {str(e)[:80]}")
                    continue
                finally:
                    quiet.setLevel(level)
                bare[(which, precision, compiled)] = tps
                note = ""
                if which == "hf" and ("ours", precision, compiled) in bare:
                    note = f"ours / hf = {bare[('ours', precision, compiled)] / tps:.2f}x"
                if which == "hf" and compiled:  # ours compiles with fullgraph=True
                    note += "; HF's forward has a graph break (lengths.max().item() in transformers' XLM)"
                table.row(label, tps, mfu(tps, args.dim, args.layers, args.seq, args.vocab, pred, peak), mem, note)
    def loop_row(compiled: bool, scope: str = "layers") -> None:  # loop overhead: MLM streams = the bare step's shapes
        label = f"whole loop {main_precision}{f' compiled ({scope})' if compiled else ''}, MLM streams"
        if table.late(label):
            return
        try:
            ref, _ = bare_step(args, device, "ours", main_precision, compiled, vocab=v_data, scope=scope)
            recs = run_trainer(args, data, tmp, f"loop{int(compiled)}{scope}",
                               [*common, "objectives.mlm=[en]", f"train.compile={str(compiled).lower()}",
                                f"train.compile_scope={scope}"])
            tps = recs[-1]["tokens_per_s"]  # the last interval: compilation and warm-up excluded
            table.row(label, tps, mfu(tps, args.dim, args.layers, args.seq, v_data, pred, peak),
                      recs[-1].get("memory_gb"), f"bare step on the same shapes (vocab {v_data}) {ref:,.0f} tokens/s: "
                      f"loop overhead {100 * (1 - tps / ref):.1f}%")
        except Exception as e:
            table.row(label, None, None, None, f"failed: {str(e)[:100]}")
    # the most telling rows first: compiling is what may not fit the 5-minute budget
    bare_rows(False)
    loop_row(False)
    for precision in (["bf16", "fp16"] if cuda else ["fp32"]):
        label = f"short run {precision}: loss falls"
        if table.late(label):
            continue
        try:
            recs = run_trainer(args, data, tmp, f"run-{precision}", [
                f"train.max_steps={args.run_steps}", f"run.log_every={max(args.run_steps // 5, 1)}",
                f"train.eval_every={args.run_steps}", f"train.save_every={args.run_steps}",
                f"train.precision={precision}", "optim.lr=5e-4", "optim.warmup_updates=5"])
            first, last = recs[0]["loss"], recs[-1]["loss"]
            table.row(label, recs[-1]["tokens_per_s"], None, recs[-1].get("memory_gb"),
                      f"loss {first:.3f} -> {last:.3f}: {'falls' if last < first else 'DOES NOT FALL'}")
        except Exception as e:
            table.row(label, None, None, None, f"failed: {str(e)[:100]}")
    for pack in (False, True):  # MLM + TLM, packing off / on (TLM rows: tokens / S, not comparable to MFU)
        label = f"whole loop {main_precision}, MLM+TLM, pack {'on' if pack else 'off'}"
        if table.late(label):
            continue
        try:
            recs = run_trainer(args, data, tmp, f"pack{int(pack)}",
                               [*common, f"data.pack={str(pack).lower()}", "train.compile=false",
                                f"data.max_len={args.seq // 2 - 2}"])  # pairs that fit one row
            table.row(label, recs[-1]["tokens_per_s"], None, recs[-1].get("memory_gb"), "tasks: MLM en, fr; TLM en-fr")
        except Exception as e:
            table.row(label, None, None, None, f"failed: {str(e)[:100]}")
    n_gpus = torch.cuda.device_count() if cuda else 0
    for parallelism in ("ddp", "fsdp"):
        label = f"{parallelism} x {n_gpus} GPUs"
        if n_gpus < 2:
            table.row(label, None, None, None, "skipped: needs 2 or more GPUs")
            continue
        if table.late(label):
            continue
        try:
            recs = run_trainer(args, data, tmp, parallelism, [
                f"train.max_steps={args.loop_steps}", f"run.log_every={max(args.loop_steps // 4, 1)}",
                f"train.eval_every={args.loop_steps}", f"train.save_every={args.loop_steps}",
                f"train.parallelism={parallelism}", "train.precision=bf16"], nproc=n_gpus)
            table.row(label, recs[-1]["tokens_per_s"], None, recs[-1].get("memory_gb"), "all ranks")
        except Exception as e:
            table.row(label, None, None, None, f"failed: {str(e)[:100]}")
    bare_rows(True)
    loop_row(True)  # regional compilation (the default scope): one compiled layer for all layers
    loop_row(True, "model")  # the whole model as one graph, for comparison


def len_vocab(data: Path) -> int:
    from xlm.data.dictionary import Dictionary

    return len(Dictionary.read_vocab(data / "vocab"))


if __name__ == "__main__":
    main()
