"""The training step's efficiency contracts on CPU: host synchronizations counted, batches prefetched
exactly, updates of non-finite steps skipped on the device, ``torch.compile`` without graph breaks and
with a bounded number of graphs. (Speed itself is measured by scripts/bench/, not here.)"""

from __future__ import annotations

import math
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from training_data import synthetic_folder, tiny_config

from xlm.data.sampling import TAG_MASK, TAG_OBJECTIVES, rng
from xlm.errors import XLMError
from xlm.objectives import make_batch
from xlm.objectives.registry import OBJECTIVES
from xlm.train.loss import LossModule, mark_dynamic
from xlm.train.prefetch import pred_capacity
from xlm.trainer import Trainer

aten = torch.ops.aten


pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("eff") / "data", n_train=300)


class SyncRecorder(TorchDispatchMode):
    """Records the operators that make the host wait for the device: reading a scalar, ops whose output
    size depends on values (nonzero, masked_select, boolean indexing) and device-to-host copies."""

    def __init__(self):
        super().__init__()
        self.syncs: list[str] = []
        self.generation: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in (aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.item):
            self._record(str(func))
        elif packet in (aten.index, aten.index_put, aten.index_put_) and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or [])):
            self._record(f"{func} (boolean index)")
        elif packet in (aten._to_copy, aten.copy_):
            src = args[1] if packet is aten.copy_ else args[0]
            dst = args[0].device if packet is aten.copy_ else kwargs.get("device", src.device)
            if src.device.type != "cpu" and torch.device(dst).type == "cpu":
                self._record(f"{func} (device to host)")
        return func(*args, **kwargs)

    def _record(self, what: str) -> None:
        """Syncs inside back-translation's decoding loop are listed apart (documented: one per decoded token)."""
        if any(f.name == "back_translate" for f in traceback.extract_stack()):
            self.generation.append(what)
        else:
            self.syncs.append(what)


# every registered objective, added to the tiny config's MLM on en, fr and TLM on en-fr
WITH_OBJECTIVE = {"mlm": [], "clm": ["objectives.clm=[en]"], "camlm": ["objectives.camlm=[en-fr]"],
                  "btmlm": ["objectives.btmlm=[en>fr]"]}
# the translation objectives, on an encoder-decoder (MLM+TLM then run on its encoder)
ENC_DEC = ["model.encoder_only=false"]
WITH_OBJECTIVE |= {"ae": [*ENC_DEC, "objectives.ae=[en]", "objectives.word_dropout=0.1"],
                   "mt": [*ENC_DEC, "objectives.mt=[en-fr]"], "bt": [*ENC_DEC, "objectives.bt=[en-fr-en]"]}


def test_the_efficiency_tests_cover_every_registered_objective():
    assert set(WITH_OBJECTIVE) == set(OBJECTIVES)


def _trainer(data, path, *overrides):
    return Trainer(tiny_config(data, path, ["train.eval_at_start=false", "train.accumulate_gradients=2",
                                            *overrides]))


@pytest.mark.parametrize("objective", list(WITH_OBJECTIVE))
def test_a_step_with_the_fused_optimizer_has_no_host_sync(data, tmp_path, objective):
    """The documented count (docs/performance.md): 0 per step, with every objective; the host reads the
    step's statistics once per log interval (``resolve``)."""
    trainer = _trainer(data, tmp_path / "fused", "optim.implementation=fused", "train.prefetch=0",
                       *WITH_OBJECTIVE[objective])
    assert objective in {t.objective for t in trainer.tasks}
    assert trainer.device_skip and not trainer.resolve_every_step
    trainer.train_step()  # (first step: optimizer state is created)
    with SyncRecorder() as rec:
        for _ in range(4):  # MLM on streams and TLM on (padded) pairs, 2 micro-batches each
            trainer.train_step()
    assert rec.syncs == []
    assert bool(rec.generation) == (objective == "bt")  # BT's greedy decoding reads whether all sentences ended
    assert not trainer.resolve() and trainer.interval.steps == 5 and trainer.state.updates == 5
    assert all(math.isfinite(v) for v in trainer.interval.tasks["MLM-en-fr"])


def test_a_step_with_the_foreach_optimizer_reads_one_flag(data, tmp_path):
    """Without a fused optimizer the skip decision is read on the host: one scalar per step, plus the
    optimizer's own per-parameter step counters (CPU tensors even on CUDA: no device sync there)."""
    trainer = _trainer(data, tmp_path / "foreach", "optim.implementation=foreach", "train.prefetch=0")
    trainer.train_step()
    n_params = len(trainer.params)
    with SyncRecorder() as rec:
        trainer.train_step()
    assert len(rec.syncs) == 1 + n_params and set(rec.syncs) == {"aten._local_scalar_dense.default"}


def test_prefetched_batches_are_the_steps_own(data, tmp_path):
    """A background prefetcher yields exactly the batches and masks the step draws from (seed, rank, step)."""
    ahead = _trainer(data, tmp_path / "a", "train.prefetch=3")
    inline = _trainer(data, tmp_path / "b")
    from xlm.train.prefetch import Prefetcher

    ahead.prefetcher = Prefetcher(ahead.builder, 0, 3)
    cfg = inline.cfg
    try:
        for step in range(6):
            sb = ahead.prefetcher.get(step)
            drawn = inline.drawer.draw(step, rng(cfg.run.seed, TAG_OBJECTIVES, step))
            assert [(t.name, w) for t, w in drawn] == [(t.name, w) for t, w in sb.drawn]
            i = 0
            for micro in range(cfg.train.accumulate_gradients):
                for j, (task, _) in enumerate(drawn):
                    raw = inline.data.sources[task].next()
                    b = make_batch(task, raw, inline.train_masker, rng(cfg.run.seed, TAG_MASK, 0, step, micro, j))
                    m = sb.micro[i]
                    i += 1
                    for name in ("x", "lengths", "pred_mask", "targets", "positions"):
                        x, y = getattr(b, name), getattr(m.batch, name)
                        assert (x is None and y is None) or torch.equal(x, y), name
                    assert torch.equal(torch.as_tensor(b.langs), torch.as_tensor(m.batch.langs))
                    assert torch.equal(m.pred_index, b.pred_mask.flatten().nonzero().flatten())
                    assert m.padded == bool(b.lengths.min() < b.x.shape[1]) and m.n_pred == b.targets.numel()
            assert i == len(sb.micro)
    finally:
        ahead.prefetcher.close()


def test_non_finite_updates_are_skipped_on_the_device(data, tmp_path):
    """lr 1e30: the first update blows the weights up, the next losses are not finite; the fused kernel
    skips those updates (weights stay finite), the host takes them back and stops after nan_tolerance."""
    trainer = _trainer(data, tmp_path / "nan", "optim.implementation=fused", "optim.schedule=constant",
                       "optim.lr=1e30", "optim.warmup_updates=0", "optim.clip_grad_norm=0",
                       "train.nan_tolerance=2", "run.log_every=50")
    with pytest.raises(XLMError, match="diverged: 3 consecutive"):
        trainer.train()
    st = trainer.state
    assert st.nan_streak == 3 and st.updates == trainer.scheduler.n == st.step - 3
    assert all(torch.isfinite(p).all() for p in trainer.params)
    assert "update skipped (1 in a row; tolerance 2)" in (tmp_path / "nan" / "train.log").read_text()


def test_the_loss_module_compiles_without_graph_breaks(data, tmp_path):
    trainer = _trainer(data, tmp_path / "c", "objectives.clm=[en]", "train.prefetch=0")
    # fullgraph: any graph break is an error (dynamo decides it, whatever the backend; "eager" is fast)
    module = torch.compile(LossModule(trainer.model), fullgraph=True, backend="eager")
    micro = [m for step in range(3) for m in trainer.builder.build(step).micro]
    # MLM streams, TLM pairs (padded, positions, language tensors), CLM (causal)
    assert {m.task.objective for m in micro} == {"mlm", "clm"} and {m.padded for m in micro} == {True, False}
    for m in micro:
        mark_dynamic(m.batch, m.pred_index)  # as the trainer does: sizes vary
    module.eval()
    for m in micro:  # same values as the eager module (no dropout)
        eager = trainer.wrapped(m.batch, m.pred_index, m.padded)
        torch.testing.assert_close(module(m.batch, m.pred_index, m.padded), eager, rtol=1e-5, atol=1e-4)
    module.train()
    for m in micro:  # training mode (dropout) and backward: one graph too
        module(m.batch, m.pred_index, m.padded).backward()


@pytest.mark.parametrize(("objective", "scope"), [*((o, "layers") for o in WITH_OBJECTIVE), ("mlm", "model"),
                                                   ("mt", "model")])
def test_a_compiled_run_compiles_a_bounded_number_of_graphs(data, tmp_path, objective, scope):
    """Varying batch and sequence sizes and prediction counts do not recompile (marked dynamic); what
    does: padded rows or not, the language tensor's rank, an objective's own attention mask. Dynamo
    decides graphs the same for every backend; ``eager`` keeps the test fast. MLM+TLM: at most 4; each
    other registered objective added to it: CLM within the same 4, an objective with its own attention
    mask (CAMLM, BTMLM) at most 2 more, padded rows or not (measured: 5). BTMLM's generation runs
    outside the compiled module, as BT's. An encoder-decoder (AE, MT, BT added, MLM+TLM on its encoder)
    compiles its decoder graphs besides: at most 6. The same bounds hold for both compile scopes (regions:
    one layer graph per variant, the output loss graph)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    trainer = _trainer(data, tmp_path / "cc", "train.compile=true", "train.compile_backend=eager",
                       "train.max_steps=24", "train.eval_every=100", "train.save_every=100", "run.log_every=8",
                       f"train.compile_scope={scope}", *WITH_OBJECTIVE[objective])
    trainer.train()
    assert trainer.state.step == 24
    bound = 6 if objective in ("camlm", "btmlm") or OBJECTIVES[objective].decoder else 4
    assert 1 <= counters["stats"]["unique_graphs"] <= bound, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    torch._dynamo.reset()


LINEAR = torch._C._nn.linear
RECORDED: list[torch.fx.GraphModule] = []


@torch._dynamo.register_backend(name="xlm_test_recording")
def _recording_backend(gm, example_inputs):
    """A torch.compile backend that keeps the graphs dynamo captured and runs them as they are."""
    RECORDED.append(gm)
    return gm.forward


@pytest.mark.parametrize("scope", ["layers", "model"])
def test_regional_compilation_traces_one_layer_for_all_layers(data, tmp_path, scope):
    """compile_scope layers: the graphs hold one layer's linear maps (q, k, v, out, 2 of the FFN) or the
    output layer's, whatever the depth; compile_scope model: one graph holds all three layers'."""
    torch._dynamo.reset()
    RECORDED.clear()
    trainer = _trainer(data, tmp_path / scope, "train.compile=true", "train.compile_backend=xlm_test_recording",
                       f"train.compile_scope={scope}", "model.n_layers=3", "train.max_steps=4", "train.prefetch=0",
                       "train.eval_every=100", "train.save_every=100")
    trainer.train()
    linears = sorted({sum(n.target is LINEAR for n in g.graph.nodes) for g in RECORDED})
    assert linears == ([1, 6] if scope == "layers" else [3 * 6 + 1]), linears
    torch._dynamo.reset()


def test_regional_compilation_gives_the_eager_values(data, tmp_path):
    """Loss and gradients of the compiled regions (aot_eager: dynamo, AOT autograd's forward and backward
    graphs) equal the eager module's, on stream batches and padded pair batches."""
    trainer = _trainer(data, tmp_path / "rv", "model.dropout=0", "model.attention_dropout=0", "model.n_layers=2",
                       "train.prefetch=0")
    micro = [m for step in range(3) for m in trainer.builder.build(step).micro]
    assert {m.padded for m in micro} == {True, False}
    module = LossModule(trainer.model)

    def loss_and_grads():
        out = []
        for m in micro:
            trainer.model.zero_grad(set_to_none=True)
            loss = module(m.batch, m.pred_index, m.padded)
            loss.backward()
            out.append((loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]))
        return out

    eager = loss_and_grads()
    torch._dynamo.reset()
    module.compile_regions("aot_eager")  # the model's layers now run the compiled region
    assert trainer.model.compiled_layers
    for (loss, grads), (loss_c, grads_c) in zip(eager, loss_and_grads(), strict=True):
        torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-4)
        for g, g_c in zip(grads, grads_c, strict=True):
            torch.testing.assert_close(g_c, g, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


def test_the_compile_scope_follows_the_parallelism():
    from xlm.config import TrainConfig
    from xlm.train.compile import compile_scope

    assert compile_scope(TrainConfig(compile=True), fsdp=False) == "layers"
    assert compile_scope(TrainConfig(compile=True), fsdp=True) == "model"  # FSDP2's hooks: the whole model
    assert compile_scope(TrainConfig(compile=True, compile_scope="model"), fsdp=False) == "model"
    # an encoder-decoder: regions would leave its decoder eager
    assert compile_scope(TrainConfig(compile=True), fsdp=False, encoder_decoder=True) == "model"
    forced = TrainConfig(compile=True, compile_scope="layers")
    assert compile_scope(forced, fsdp=False, encoder_decoder=True) == "layers"
    with pytest.raises(XLMError, match=r"^train.compile_scope: layers does not run under FSDP2"):
        compile_scope(TrainConfig(compile=True, compile_scope="layers"), fsdp=True)


def test_the_inductor_head_start_works_with_the_installed_torch(tmp_path, monkeypatch):
    """warm_inductor uses torch-private functions: with the installed torch it must meet no error, and
    on CPU its probes must leave inductor nothing to compile (their answers cached) when it picks an ISA."""
    from torch._inductor import cpu_vec_isa

    from xlm.train.compile import warm_inductor

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # the probes really compile
    warm = warm_inductor(torch.device("cpu"))
    warm.join(timeout=300)
    assert not warm.errors, warm.errors
    assert not any(t.is_alive() for t in warm.threads)
    if not warm.threads:
        pytest.skip("no x86 vector ISA to probe on this CPU")

    def compiled_again(self, code):
        raise AssertionError(f"inductor probed {self} again")

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", compiled_again)
    cpu_vec_isa.valid_vec_isa_list.cache_clear()  # as in a fresh process: the list asks every ISA again
    assert [str(i) for i in cpu_vec_isa.valid_vec_isa_list()]  # answered from the probes' cache
    cpu_vec_isa.valid_vec_isa_list.cache_clear()


def test_a_compiled_packed_run_has_one_static_shape_per_packed_task(data, tmp_path):
    """With data.pack the TLM batches are one shape, not marked dynamic: compiled static, and still no
    more graphs than unpacked (MLM streams dynamic, TLM packed static, each with its backward)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    trainer = _trainer(data, tmp_path / "pc", "train.compile=true", "train.compile_backend=eager", "data.pack=true",
                       "data.bptt=48", "train.max_steps=40", "train.eval_every=100", "train.save_every=100",
                       "run.log_every=8", "train.prefetch=0")
    shapes = set()
    build = trainer.builder.build

    def recording(step):
        sb = build(step)
        shapes.update((tuple(m.batch.x.shape), m.pred_index.numel()) for m in sb.micro if m.segments is not None)
        return sb

    trainer.builder.build = recording
    trainer.train()
    assert trainer.state.step == 40
    assert shapes == {((5, 48), pred_capacity(0.15, 5 * 48))}  # rows: ceil(tokens_per_batch 200 / 48)
    assert 1 <= counters["stats"]["unique_graphs"] <= 4, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU count is the test above)")
def test_cuda_steps_pass_the_sync_debug_mode(data, tmp_path):
    trainer = _trainer(data, tmp_path / "cuda", "train.precision=bf16")
    assert trainer.device.type == "cuda" and trainer.device_skip
    trainer.train_step()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not trainer.resolve()


def test_activation_checkpointing_changes_no_result():
    """model.checkpoint_activations recomputes each layer in backward with the same dropout masks."""
    from xlm.config import ModelConfig
    from xlm.model import TransformerModel

    grads = []
    for recompute in (False, True):
        torch.manual_seed(0)
        cfg = ModelConfig(emb_dim=32, n_layers=2, n_heads=2, dropout=0.3, attention_dropout=0.3,
                          checkpoint_activations=recompute)
        model = TransformerModel(cfg, 50, 2).train()
        x = torch.randint(14, 50, (3, 9), generator=torch.Generator().manual_seed(1))
        lengths = torch.tensor([9, 5, 7])
        x[1, 5:] = 2
        x[2, 7:] = 2
        torch.manual_seed(2)
        loss = model.predict(model(x, lengths=lengths, langs=1)).float().logsumexp(-1).sum()
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = grads
    assert torch.equal(l0, l1) and g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=0, atol=1e-6, msg=name)


def test_fused_path_resumes_exactly(data, tmp_path):
    """Statistics still on the device are read before a checkpoint: a run stopped at step 6 and resumed
    ends where an uninterrupted one does (prefetching on, as by default)."""
    common = ["optim.implementation=fused", "train.eval_every=100", "train.save_every=6", "run.log_every=4"]
    straight = _trainer(data, tmp_path / "a", *common, "train.max_steps=12")
    straight.train()
    _trainer(data, tmp_path / "b", *common, "train.max_steps=6").train()
    resumed = _trainer(data, tmp_path / "b", *common, "train.max_steps=12")
    resumed.train()
    assert resumed.state.updates == straight.state.updates == 12 and resumed.state.tokens == straight.state.tokens
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name
