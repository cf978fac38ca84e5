"""How ``train.compile`` compiles: regions compiled once and reused, and a head start for inductor.

**Regions** (``train.compile_scope: layers``, what ``auto`` picks for an encoder). Instead of one
graph of the whole model and its loss, two functions are compiled:
:func:`xlm.model.transformer.encoder_layer`, whose modules are arguments, so that one compiled
version runs every layer, and :func:`xlm.train.loss.output_loss` (output layer and cross-entropy on
the predicted positions). The embeddings and the glue between regions run eagerly. This is PyTorch's
regional compilation (as torchtitan compiles each block): the compile time no longer grows with the
depth, and on the tiny config the first step comes twice as early (docs/performance.md).
``compile_scope: model`` compiles the whole loss module as one graph
(:class:`xlm.train.loss.LossModule`), the decoder of an encoder-decoder included, which the regions
leave eager. ``auto`` (the default) picks ``layers``, or ``model`` under FSDP2 and for an
encoder-decoder. Without gradients (evaluation, generation) regions run their eager function.

**Head start.** Before the first compiled step can run, inductor does two things once per process
that do not depend on the model, on the critical path of the first graph:

- it starts its pool of compile workers (subprocesses that import torch). torch starts the pool early
  itself only when Triton is installed (``torch._inductor.async_compile.maybe_warm_pool``), so on a
  CPU-only install the first kernels are compiled one by one in the main process while it comes up;
- on CPU, it probes which vector instruction sets the C++ compiler can build for: one test program
  per set the CPU reports, compiled with the torch headers, one after the other (about 9 s on a
  2-core machine, ``torch._inductor.cpu_vec_isa.valid_vec_isa_list``).

:func:`warm_inductor` starts both before the data is loaded, the probes in parallel threads (the work
is in subprocesses, so the threads do not hold the GIL). Inductor then finds the pool up and the
probes' answers cached; the compiled code is the same. The functions called are torch-private, so
any error leaves everything to inductor, as without the head start, and is kept in ``errors`` (a
test checks there is none with the installed torch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from xlm.config import TrainConfig
from xlm.errors import XLMError


def compile_scope(train: TrainConfig, fsdp: bool, encoder_decoder: bool = False) -> str:
    """``train.compile_scope`` resolved: ``auto`` is ``layers``, or ``model`` under FSDP2 (``fsdp``: the
    run shards its model) and for an encoder-decoder (whose decoder layers ``layers`` leaves eager).
    Raises XLMError for ``layers`` under FSDP2: its hooks (gathering a layer's shards) cannot run
    inside a compiled layer."""
    scope = train.compile_scope
    if scope == "auto":
        return "model" if fsdp or encoder_decoder else "layers"
    if scope == "layers" and fsdp and train.compile:
        raise XLMError("train.compile_scope: layers does not run under FSDP2 (its hooks cannot run inside a compiled "
                       "layer); use model or auto")
    return scope


class Region:
    """``fn`` compiled once (``fullgraph``: a graph break is an error) and called with modules and tensors.

    ``dynamic``: mark the sizes of the tensor arguments dynamic before a call (every dimension but the
    feature dimension of floating tensors), so that varying batch and sequence sizes and prediction
    counts share one graph; set False for packed batches (``data.pack``: one static shape per task).
    Without gradients the call runs ``fn`` itself (evaluation and generation stay eager).
    """

    def __init__(self, fn: Callable[..., Tensor], backend: str):
        self.fn = fn
        self.compiled = torch.compile(fn, backend=backend, fullgraph=True)
        self.dynamic = True

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        if not torch.is_grad_enabled():
            return self.fn(*args, **kwargs)
        if self.dynamic:
            for t in (*args, *kwargs.values()):
                if isinstance(t, Tensor):
                    for dim in range(t.dim() - (1 if t.is_floating_point() else 0)):
                        torch._dynamo.maybe_mark_dynamic(t, dim)
        return self.compiled(*args, **kwargs)


def compile_regions(model: nn.Module, backend: str) -> list[Region]:
    """Install compiled regions: every :class:`~xlm.model.transformer.TransformerModel` in ``model`` (the
    model, or an encoder-decoder's encoder) runs its layers through one compiled ``encoder_layer``.
    Returns the regions made (the caller sets their ``dynamic``); the output loss region is the loss
    module's (:meth:`xlm.train.loss.LossModule.compile_regions`)."""
    from xlm.model.decoder import TransformerDecoder
    from xlm.model.transformer import TransformerModel, encoder_layer

    layers = Region(encoder_layer, backend)
    for m in model.modules():
        # (a decoder runs its own loop with cross-attention, xlm.model.decoder.run_layers: left eager)
        if isinstance(m, TransformerModel) and not isinstance(m, TransformerDecoder):
            m.layer_fn = layers
            m.compiled_layers = True
    return [layers]


class InductorWarmup:
    """Handle on the background work: ``threads`` (the ISA probes) and the ``errors`` they met."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def join(self, timeout: float | None = None) -> None:
        for t in self.threads:
            t.join(timeout)


def warm_inductor(device: torch.device) -> InductorWarmup:
    """Start the compile worker pool now and, on CPU, probe the vector ISAs in daemon threads; returns
    at once (the pool's subprocesses and the probes run on). Call only when inductor will compile."""
    warm = InductorWarmup()
    try:
        from torch._inductor.async_compile import AsyncCompile

        AsyncCompile.warm_pool()  # the pool's sidecar process (a no-op with one compile thread)
        AsyncCompile.wakeup()  # ... and its workers
    except Exception as e:  # noqa: BLE001 (a head start only: inductor starts the pool itself)
        warm.errors.append(f"compile worker pool: {type(e).__name__}: {e}")
    if device.type != "cpu":  # GPU kernels are Triton's; the C++ vector ISA probe is for CPU kernels
        return warm
    try:
        from torch._inductor import cpu_vec_isa

        if not callable(getattr(cpu_vec_isa, "x86_isa_checker", None)):
            return warm
        cpu_flags = cpu_vec_isa.x86_isa_checker()  # [] on other architectures: nothing to probe
        # The ISAs valid_vec_isa_list would probe: those whose every flag the CPU reports.
        isas = [isa for isa in cpu_vec_isa.supported_vec_isa_list if all(f in cpu_flags for f in str(isa).split())]
    except Exception as e:  # noqa: BLE001
        warm.errors.append(f"vector ISA list: {type(e).__name__}: {e}")
        return warm

    def probe(isa: object) -> None:
        try:
            bool(isa)  # compiles and loads the test program; the answer is cached on the ISA object
        except Exception as e:  # noqa: BLE001
            warm.errors.append(f"vector ISA {isa}: {type(e).__name__}: {e}")

    for isa in isas:
        t = threading.Thread(target=probe, args=(isa,), name=f"xlm-isa-probe-{isa}", daemon=True)
        t.start()
        warm.threads.append(t)
    return warm
