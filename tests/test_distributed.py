"""Multi-process training with real processes on CPU (gloo), launched as users launch it (torchrun).

(a) 2 ranks x batch b == 1 rank x batch 2b; (b) accumulation 2 x b/2 == b; (c) a two-node job
(two torchrun agents, c10d rendezvous on localhost) trains, checkpoints and resumes; (d) a rank
killed under ``--max-restarts=1`` -> the group restarts from the checkpoint and finishes;
(e) SIGTERM -> checkpoint + exit 0, rerun resumes. Plus bf16 on CPU, fp16 rounding, guards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from training_data import ROOT, SUBPROCESS_ENV, synthetic_folder, tiny_config_dict, write_config

from xlm.config import load_config
from xlm.distributed import get_dist_info, slurm_master_port
from xlm.errors import XLMError
from xlm.objectives import Masker
from xlm.precision import RoundingMasker
from xlm.serialization import safe_load
from xlm.trainer import Trainer

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TRAIN = str(ROOT / "train.py")
ENV = {k: v for k, v in SUBPROCESS_ENV.items()
       if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}


pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("dist") / "data", n_train=400)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(data: Path, run: Path, **train) -> dict:
    cfg = tiny_config_dict(data, run)
    cfg["train"].update({"max_steps": 6, "eval_every": 1000, "save_every": 1000, "eval_at_start": False,
                         "eval_max_sentences": 16, **train})
    return cfg


def _clm(cfg: dict, batch_size: int) -> dict:
    """CLM without dropout: no randomness in a step but the data order (masks would depend on the rank)."""
    cfg["objectives"] = {"mlm": [], "clm": ["en", "fr"]}
    cfg["model"].update(dropout=0.0, attention_dropout=0.0)
    cfg["data"]["batch_size"] = batch_size
    cfg["train"]["validation_metric"] = ""
    return cfg


@pytest.fixture(autouse=True)
def _no_orphan_workers(tmp_path):
    """A test that fails or times out must not leave torchrun workers (grandchildren) behind."""
    yield
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(tmp_path).encode() in cmdline and int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _write(cfg: dict, run: Path) -> Path:
    return write_config(run.parent / f"{run.name}.yaml", cfg)


def _torchrun(args: list[str], cfg: Path, timeout: float = 150,
              extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    out = subprocess.run([*TORCHRUN, *args, TRAIN, "--config", str(cfg), *extra], env=ENV, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _final(run: Path, step: int) -> dict:
    return safe_load(run / "checkpoints" / f"step-{step:08d}.pt")


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max())


# -- (a) and (b): the update does not depend on how the batch is split -----------------------------
@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_two_ranks_equal_one_rank_with_twice_the_batch(data, tmp_path, parallelism):
    one, two = tmp_path / "one", tmp_path / "two"
    trainer = Trainer(load_config(_write(_clm(_config(data, one), 8), one)))
    trainer.train()
    _torchrun(["--standalone", "--nproc-per-node=2"], _write(_clm(_config(data, two, parallelism=parallelism), 4), two))
    a, b = _final(one, 6), _final(two, 6)
    assert len(b["samplers"]) == 2 and a["train_state"]["tokens"] == b["train_state"]["tokens"]
    _assert_close(a["model"], b["model"], atol=2e-5)
    moved = max((a["model"][k] - v).abs().max().item() for k, v in trainer.model.state_dict().items()) == 0
    assert moved  # (the in-process trainer is the one that wrote `one`)
    la, lb = _records(one, "train"), _records(two, "train")
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    assert np.allclose([r["loss"] for r in la], [r["loss"] for r in lb], rtol=1e-5)  # all-reduced metrics
    assert lb[-1]["tokens_per_s_per_device"] == pytest.approx(lb[-1]["tokens_per_s"] / 2)
    if parallelism == "fsdp":  # full-tensor checkpoints of sharded parameters resume under FSDP
        out = _torchrun(["--standalone", "--nproc-per-node=2"], two.parent / "two.yaml", extra=("train.max_steps=8",))
        assert "resumed from" in out.stdout + out.stderr and _final(two, 8)["step"] == 8


def test_fused_optimizer_two_ranks_equal_one_rank(data, tmp_path):
    """The device-side path (fused AdamW: no per-step host sync, statistics and the stop flag reduced
    once per log interval, the loss-finite flag a device all-reduce) splits the batch exactly too."""
    one, two = tmp_path / "one", tmp_path / "two"
    cfg_one = _clm(_config(data, one), 8)
    cfg_one["optim"].update(implementation="fused")
    Trainer(load_config(_write(cfg_one, one))).train()
    cfg_two = _clm(_config(data, two), 4)
    cfg_two["optim"].update(implementation="fused")
    _torchrun(["--standalone", "--nproc-per-node=2"], _write(cfg_two, two))
    a, b = _final(one, 6), _final(two, 6)
    assert a["train_state"]["updates"] == b["train_state"]["updates"] == 6
    _assert_close(a["model"], b["model"], atol=2e-5)
    la, lb = _records(one, "train"), _records(two, "train")
    assert [r["step"] for r in la] == [r["step"] for r in lb] == [5, 6]
    assert np.allclose([r["loss"] for r in la], [r["loss"] for r in lb], rtol=1e-5)


def test_accumulating_two_half_batches_equals_one_batch(data, tmp_path):
    def run(name: str, batch: int, accum: int) -> Trainer:
        cfg = _clm(_config(data, tmp_path / name, accumulate_gradients=accum), batch)
        t = Trainer(load_config(_write(cfg, tmp_path / name)))
        t.train()
        return t

    full, halves = run("full", 8, 1), run("halves", 4, 2)
    _assert_close(full.model.state_dict(), halves.model.state_dict(), atol=2e-5)
    assert full.state.tokens == halves.state.tokens


# -- (c) two nodes ---------------------------------------------------------------------------------
def test_two_node_job_trains_checkpoints_and_resumes(data, tmp_path):
    run = tmp_path / "nodes"
    cfg = _write(_config(data, run, max_steps=6, save_every=3), run)

    def job(max_steps: int) -> list[str]:
        port = _free_port()
        procs = [subprocess.Popen([*TORCHRUN, "--nnodes=2", f"--node-rank={n}", "--nproc-per-node=1",
                                   "--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}", "--rdzv-id=xlmtest",
                                   TRAIN, "--config", str(cfg), f"train.max_steps={max_steps}"],
                                  env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for n in (0, 1)]
        outs = [p.communicate(timeout=150)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
        return outs

    job(6)
    assert _final(run, 6)["train_state"]["world_size"] == 2
    outs = job(9)
    assert any("resumed from" in o and "step-00000006.pt" in o for o in outs)
    final = _final(run, 9)
    assert final["step"] == 9 and len(final["samplers"]) == 2
    assert [r["step"] for r in _records(run, "train")] == [5, 6, 9]  # log_every 5 + each end; one file


# -- (d) a rank dies: torchrun restarts the group, which resumes ------------------------------------
def test_killed_rank_is_restarted_and_the_run_finishes(data, tmp_path):
    run = tmp_path / "restart"
    steps = 200
    cfg = _write(_config(data, run, max_steps=steps, save_every=10), run)
    agent = subprocess.Popen([*TORCHRUN, "--standalone", "--nproc-per-node=2", "--max-restarts=1",
                              "--monitor-interval=0.2", TRAIN, "--config", str(cfg)],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "step-00000010.pt").exists():
            assert agent.poll() is None and time.monotonic() < deadline, agent.stdout.read()[-3000:]
            time.sleep(0.02)
        workers = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout.split()
        assert workers
        os.kill(int(workers[-1]), signal.SIGKILL)
        out = agent.communicate(timeout=150)[0]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, out[-3000:]
    final = _final(run, steps)
    assert final["step"] == steps and final["train_state"]["step"] == steps
    log = (run / "train.log").read_text()
    assert "resumed from" in log  # the restarted group continued from a checkpoint, not from scratch
    train_steps = [r["step"] for r in _records(run, "train")]
    assert train_steps == list(range(5, steps + 1, 5))  # every step ran, none twice in the record


# -- (e) SIGTERM ------------------------------------------------------------------------------------
def test_sigterm_saves_a_checkpoint_exits_0_and_the_rerun_resumes(data, tmp_path):
    run = tmp_path / "term"
    cfg = _write(_config(data, run, max_steps=100000, save_every=100000), run)
    cmd = [sys.executable, TRAIN, "--config", str(cfg)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    assert "stopped by SIGTERM" in out
    saved = sorted((run / "checkpoints").glob("step-*.pt"))
    assert len(saved) == 1
    step = safe_load(saved[0])["step"]
    assert 5 <= step < 100000
    out = subprocess.run([*cmd, f"train.max_steps={step + 3}"], env=ENV, capture_output=True, text=True,
                         timeout=90, check=True).stdout
    assert f"resumed from {saved[0]} at step {step}" in out
    assert _final(run, step + 3)["step"] == step + 3


# -- precision and guards (in-process) --------------------------------------------------------------
def test_bf16_autocast_trains_on_cpu(data, tmp_path):
    cfg = load_config(_write(_config(data, tmp_path / "bf16", max_steps=3, precision="bf16"), tmp_path / "bf16"))
    t = Trainer(cfg)
    metrics = t.train()
    assert t.state.updates == 3 and np.isfinite(metrics["valid_mlm_ppl"])
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # fp32 master weights
    assert all(np.isfinite(r["loss"]) for r in _records(tmp_path / "bf16", "train"))


def test_fp16_rounding_masker_rounds_to_multiples_of_8_without_failing_below_8():
    from xlm.config import ObjectivesConfig

    cfg = ObjectivesConfig(mlm=["en"], word_pred=0.15)
    plain, rounding = Masker(cfg, 100), RoundingMasker(cfg, 100)
    gen = np.random.default_rng(0)
    for n in (3, 20, 60, 200, 1000):
        x = gen.integers(14, 100, size=(1, n))
        got = int(rounding.select(x, np.random.default_rng(n)).sum())
        ref = int(plain.select(x, np.random.default_rng(n)).sum())
        assert got == (ref - ref % 8 if ref >= 8 else ref) and got >= 1


def test_fp16_on_cpu_is_refused_clearly(data, tmp_path):
    cfg = load_config(_write(_config(data, tmp_path / "h", precision="fp16"), tmp_path / "h"))
    with pytest.raises(XLMError, match="fp16 needs a CUDA"):
        Trainer(cfg)


def test_slurm_environment_gives_ranks_and_a_job_derived_port(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    info = get_dist_info()
    assert (info.rank, info.local_rank, info.world_size, info.launcher) == (5, 1, 8, "slurm")
    assert slurm_master_port() == 10000 + 123456 % 20000
