"""Stage 5 for the ``.pte`` format: ExecuTorch programs delegated to XNNPACK, from the same recipe.

``torch.export`` -> ``XNNPACKQuantizer`` (dynamic int8 activations, symmetric int8 weights per channel or
per tensor, on exactly the modules :func:`convert.quantize.select_modules` picks for the ``.ptl``) through
``prepare_pt2e`` / ``convert_pt2e`` -> ``to_edge_transform_and_lower(..., [XnnpackPartitioner()])`` ->
``.pte``, with the kit's metadata embedded as a constant method (``clip_kit_json``) and a delegation report.

What the recipe asks that XNNPACK cannot do, and what the kit does instead (said in the conversion log):
- weight-only int8 token embedding: XNNPACK has no weight-only quantization. The kit keeps its own
  :class:`~convert.quantize.Int8Embedding` (uint8 codes, a gather and a multiply-add in ExecuTorch's portable
  kernels), so the text tower is as small as the ``.ptl``'s;
- ``per-tensor`` weights on attention's stacked ``in_proj`` become three per-tensor scales (q, k, v), because
  the ``.pte`` computes ``in_proj`` as three Linears (:class:`~convert.attention.QKVLinear`);
- ``fbgemm`` / ``full_range`` / ``pack`` / ``bytecode_version`` are TorchScript matters: XNNPACK quantizes
  activations to 8 bits per row on every CPU.

Towers take one input a call (a phone's batch), the text tower any length up to the context, cut by the
caller after its end-of-text token (:func:`cut_tokens`), as the ``.ptl`` tower cuts inside itself.
"""
from __future__ import annotations

import contextlib
import copy
import json
import operator
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attention import QKVLinear, attention_for_export
from .config import QuantConfig
from .errors import ArtifactError, ExportError, one_line
from .files import atomic_write_bytes
from .quantize import QuantReport, quantize_embeddings, select_modules
from .schema import EXTRA_FILE
from .towers import ExportTextEncoder, TextEncoder

# The last release that runs on the kit's torch 2.12.1 (executorch 1.4+ need torch 2.13, which has no XNNPACK
# in its wheels); pyproject.toml pins the same.
EXECUTORCH_PIN = "1.3.1"
INSTALL = 'pip install -e ".[executorch]"'
METADATA_METHOD = EXTRA_FILE.replace(".", "_")  # "clip_kit_json"
# A Linear, matmul or attention op in a portable kernel is the known ExecuTorch speed trap (10-100x slower
# than XNNPACK); such a conversion fails unless the recipe sets allow_undelegated.
MUST_DELEGATE = ("linear", "addmm", "mm", "bmm", "matmul", "convolution", "scaled_dot_product", "softmax")
# What a conversion says when the recipe asks for what XNNPACK cannot do.
EMBEDDING_NOTE = ("XNNPACK has no weight-only int8: the token embedding stays the kit's Int8Embedding (uint8 codes, "
                  "gathered and scaled in ExecuTorch's portable kernels)")
PER_TENSOR_QKV_NOTE = ("per-tensor weights: the .pte computes attention's in_proj as three Linears (q, k, v), "
                       "so it gets three scales where the .ptl has one")


def executorch_version() -> str | None:
    """The installed executorch version, or None (reads package metadata: imports nothing)."""
    from importlib import metadata

    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return None


def require_executorch(*, lowering: bool = False) -> str:
    """The installed executorch version; one :class:`ExportError` line naming the fix when it is missing, is
    another release than the pin, or (``lowering``) ``flatc`` is not on PATH (executorch 1.3.1's
    serializer runs it)."""
    version = executorch_version()
    if version is None:
        raise ExportError(f"the .pte format needs ExecuTorch, which is not installed: {INSTALL} "
                          f"(executorch=={EXECUTORCH_PIN})")
    if version.split("+")[0] != EXECUTORCH_PIN:
        raise ExportError(f"executorch {version} is installed; the kit is built and tested with "
                          f"{EXECUTORCH_PIN}, the last release for torch 2.12.1: {INSTALL}")
    if lowering and shutil.which("flatc") is None:
        raise ExportError("ExecuTorch's serializer needs flatc (the FlatBuffers compiler), which is not on PATH: "
                          "apt-get install flatbuffers-compiler")
    return version


# --------------------------------------------------------------------------------------------- preparing
def prepare_tower(tower: nn.Module, quant: QuantConfig, role: str, quantize: bool
                  ) -> tuple[nn.Module, dict[str, bool], QuantReport, list[str]]:
    """The fp32 tower in the form torch.export and XNNPACK take, the modules to quantize (names in that
    form, ``{name: per-channel?}``), the report, and notes on what differs from the recipe's ``.ptl``.

    ``tower`` comes from :func:`convert.towers.build_towers` (structured as the recipe says); it is copied.
    """
    notes: list[str] = []
    selected: dict[str, bool] = {}
    report = QuantReport()
    if quantize:
        # Linear only, as the .ptl. XNNPACK takes dynamic int8 for standard (not depthwise) 2D convolutions, but
        # naming MobileCLIP2-S0's 52 such convolutions to the quantizer left them fp32 (image .pte 35.91 MiB, as the
        # .ptl; measured): until that is understood, the manifest must not call them int8.
        selected, report = select_modules(tower, quant, role)
    module = copy.deepcopy(tower).eval()
    attention_for_export(module)
    # The quantizer matches a name against the modules whose forward ran; QKVLinear's own forward never does
    # (its q, k, v are called directly), so its recipe name becomes its three Linears' names. Measured before:
    # the ViT-B-32 image .pte kept q, k, v in fp32 and weighed 145.0 MiB.
    names = dict(module.named_modules())
    selected = {part: per_channel for name, per_channel in selected.items()
                for part in ([f"{name}.{p}" for p in "qkv"] if isinstance(names.get(name), QKVLinear) else [name])}
    if quantize and quant.weights == "per-tensor" and any(name.endswith(".in_proj.q") and not per_channel
                                                          for name, per_channel in selected.items()):
        notes.append(PER_TENSOR_QKV_NOTE)
    if isinstance(module, TextEncoder):
        if quantize and quantize_embeddings(module, quant, role, report):
            notes.append(EMBEDDING_NOTE)
        module = ExportTextEncoder(module)
        selected = {f"tower.{name}": per_channel for name, per_channel in selected.items()}
    return module, selected, report, notes


def example_inputs(role: str, image_size: list[int], context_length: int, embed_dim: int):
    """``(example inputs, dynamic shapes)`` of one role: one input a call; text of any length up to the context."""
    from torch.export import Dim

    if role == "image_encoder":
        return (torch.zeros(1, 3, *image_size),), None
    if role == "text_encoder":
        length = max(2, min(8, context_length))
        tokens = torch.zeros(1, length, dtype=torch.long)
        tokens[0, -1] = 1
        return (tokens,), ({1: Dim("length", min=1, max=context_length)},)
    return (torch.zeros(1, embed_dim),), None


# --------------------------------------------------------------------------------------------- exporting
def _export(module: nn.Module, inputs: tuple, dynamic, role: str, what: str):
    try:
        return torch.export.export(module, inputs, dynamic_shapes=dynamic, strict=False)
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types
        raise ExportError(f"{role}: torch.export failed{what}: {one_line(exc)}") from None


def quantize_exported(module: nn.Module, inputs: tuple, dynamic, selected: dict[str, bool], role: str):
    """Dynamic int8 through the XNNPACK quantizer on the ``selected`` modules only; an ExportedProgram."""
    program = _export(module, inputs, dynamic, role, "")
    if not selected:
        return program
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    for name, per_channel in selected.items():
        quantizer.set_module_name(name, get_symmetric_quantization_config(is_per_channel=per_channel,
                                                                          is_dynamic=True))
    try:
        prepared = prepare_pt2e(program.module(), quantizer)
        prepared(*inputs)  # dynamic activations need no calibration; one call runs the weight observers
        converted = convert_pt2e(prepared)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{role}: XNNPACK quantization failed: {one_line(exc)}") from None
    return _export(converted, inputs, dynamic, role, " after quantization")


def delegation_report(graph_module) -> dict[str, dict[str, int]]:
    """Operator counts of a lowered program: ``{"xnnpack": {op: n}, "portable": {op: n}}`` (plus
    ``segments``: how many XNNPACK subgraphs a call enters)."""
    def op_name(node) -> str:
        name = getattr(node.target, "__name__", str(node.target))
        return name.split("::")[-1].replace("aten.", "")

    delegated: Counter[str] = Counter()
    portable: Counter[str] = Counter()
    segments = 0
    def counted(node) -> bool:  # operators; not Python's own (getitem on tuple outputs, symbolic-size arithmetic)
        return (node.op == "call_function" and getattr(node.target, "__module__", None) != operator.getitem.__module__
                and op_name(node) != "sym_size.int")

    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            segments += 1
            for inner in getattr(graph_module, node.name).original_module.graph.nodes:
                if counted(inner):
                    delegated[op_name(inner)] += 1
        elif counted(node) and "executorch_call_delegate" not in str(node.target):
            portable[op_name(node)] += 1
    return {"xnnpack": dict(sorted(delegated.items())), "portable": dict(sorted(portable.items())),
            "segments": {"xnnpack": segments}}


def undelegated_compute(report: dict[str, dict[str, int]]) -> list[str]:
    """The portable operators that are Linear, matmul, convolution or attention work (:data:`MUST_DELEGATE`)."""
    names = {op: op.split(".")[0].lstrip("_") for op in report["portable"]}
    return [op for op, name in names.items() if name in MUST_DELEGATE or name.startswith("scaled_dot_product")]


def export_pte(module: nn.Module, role: str, inputs: tuple, dynamic, selected: dict[str, bool],
               metadata: dict[str, Any], path: Path, *, allow_undelegated: bool = False) -> dict[str, Any]:
    """Export, quantize, lower to XNNPACK and save ``path`` atomically with ``metadata`` embedded; returns
    the delegation report. A Linear/matmul/attention op left to portable kernels is an :class:`ExportError`
    unless ``allow_undelegated``."""
    with warnings.catch_warnings():
        # torch.export / torchao / executorch 1.3.1 warn about their own internals (pytree, guard APIs) dozens
        # of times a tower; nothing a user can act on
        warnings.simplefilter("ignore")
        return _export_pte(module, role, inputs, dynamic, selected, metadata, path, allow_undelegated)


def _export_pte(module, role, inputs, dynamic, selected, metadata, path, allow_undelegated) -> dict[str, Any]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = quantize_exported(module, inputs, dynamic, selected, role)
    try:
        edge = to_edge_transform_and_lower(
            program, partitioner=[XnnpackPartitioner()],
            constant_methods={METADATA_METHOD: json.dumps(metadata, sort_keys=True)})
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{role}: lowering to XNNPACK failed: {one_line(exc)}") from None
    report = delegation_report(edge.exported_program().graph_module)
    missing = undelegated_compute(report)
    if missing and not allow_undelegated:
        raise ExportError(f"{role}: {', '.join(missing)} would run in ExecuTorch's portable kernels, not XNNPACK "
                          "(10-100x slower); set allow_undelegated: true in the recipe to accept it")
    try:
        data = edge.to_executorch().buffer
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{role}: ExecuTorch serialization failed: {one_line(exc)}") from None
    atomic_write_bytes(path, bytes(data))
    return report


# --------------------------------------------------------------------------------------------- running
_started = False


@contextlib.contextmanager
def _native_stderr_quiet():
    """Silence file descriptor 2 while ExecuTorch's runtime starts: its cpuinfo probe logs five lines about
    /sys files that x86 machines and emulators do not have, on every process start. Errors still arrive as
    Python exceptions."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _runtime():
    global _started
    require_executorch()
    from executorch.runtime import Runtime

    if _started:
        return Runtime.get()
    with _native_stderr_quiet():
        runtime = Runtime.get()
        from executorch.extension.pybindings import portable_lib

        portable_lib._threadpool_get_thread_count()  # starts the threadpool (the cpuinfo probe) now
    _started = True
    return runtime


def _program(path: Path, verification: str = "InternalConsistency"):
    from executorch.runtime import Verification

    try:
        return _runtime().load_program(Path(path), verification=getattr(Verification, verification))
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the runtime raises RuntimeError / ValueError from C++
        raise ArtifactError(f"{Path(path).name}: ExecuTorch refused it ({one_line(exc, 200)})") from None


def read_pte_metadata(path: Path) -> dict[str, Any]:
    """The kit's metadata embedded in a ``.pte`` (its ``clip_kit_json`` method; the forward method is not
    loaded). Raises :class:`ArtifactError` when it is not an ExecuTorch program or carries none."""
    program = _program(path, "Minimal")
    if METADATA_METHOD not in program.method_names:
        raise ArtifactError(f"{Path(path).name} carries no {METADATA_METHOD}: not written by clip-mobile-kit")
    try:
        text = program.load_method(METADATA_METHOD).execute([])[0]
        meta = json.loads(text)
    except (ValueError, RecursionError, TypeError, IndexError, RuntimeError) as exc:
        raise ArtifactError(f"{Path(path).name}: its {METADATA_METHOD} is not JSON ({one_line(exc, 120)})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{Path(path).name}: its {METADATA_METHOD} is not a JSON object")
    return meta


def cut_tokens(tokens: torch.Tensor, work: dict[str, Any] | None) -> list[torch.Tensor]:
    """One ``[1, n]`` row per prompt, cut after the position the tower pools (exact for causal towers,
    ``work.rows_end_at_eot``), else the full row: what a ``.pte`` text tower is given."""
    rows = []
    cut = bool(work and work.get("rows_end_at_eot"))
    pool, eos = (work or {}).get("pool", "argmax"), (work or {}).get("eos_id")
    for row in tokens:
        if cut:
            if pool == "eos" and eos is not None:
                hits = (row == eos).nonzero()
                end = int(hits[0]) + 1 if len(hits) else row.shape[0]
            else:
                end = int(row.argmax()) + 1
            row = row[:end]
        rows.append(row.reshape(1, -1).contiguous())
    return rows


def set_threads(count: int) -> None:
    """The XNNPACK threadpool's size (process-wide, as ``torch.set_num_threads`` is for TorchScript)."""
    _runtime()
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != count:
        portable_lib._unsafe_reset_threadpool(count)


class PteModule:
    """A loaded ``.pte`` called like a TorchScript module: a batch in, a batch out (one input a call inside)."""

    def __init__(self, path: Path, role: str, work: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.role = role
        self.work = work
        program = _program(self.path)
        try:
            self.method = program.load_method("forward")
        except Exception as exc:  # noqa: BLE001
            raise ArtifactError(f"{self.path.name}: ExecuTorch cannot load its forward method "
                                f"({one_line(exc, 200)})") from None
        self._program = program  # the method borrows the program's memory
        # the same thread count as TorchScript gets (OMP_NUM_THREADS / torch.set_num_threads): comparisons fair
        set_threads(torch.get_num_threads())

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.execute([x])[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.role == "text_encoder":
            rows = cut_tokens(x, self.work)
        else:
            rows = [x[i:i + 1].contiguous() for i in range(x.shape[0])]
        if not rows:
            raise ValueError(f"{self.path.name}: an empty batch")
        return torch.cat([self._call(row) for row in rows])

    def eval(self) -> PteModule:
        return self


def load_pte(path: Path, role: str, work: dict[str, Any] | None = None) -> PteModule:
    """Load a ``.pte`` in ExecuTorch's runtime (the loader a phone uses) as a batch-in, batch-out callable."""
    return PteModule(path, role, work)
