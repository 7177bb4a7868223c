"""The peer the kit is compared with: ONNX Runtime's dynamic int8 of the same fp32 towers.

A fair peer runs with the same thread count and the same waiting policy as the torch variants: with
``OMP_WAIT_POLICY=PASSIVE`` ONNX Runtime's own intra-op threads must not spin either (measured here under
load: ORT's text tower went bimodal, 13 ms vs 45 ms, with spinning on, while PASSIVE torch did not). The
session options used are recorded in the report.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from convert.errors import KitError

ONNX_EXPORT = ("torch.onnx.export(dynamo=False, opset 17) of the fp32 towers (text: dynamic length, fed the positions "
               "the kit's tower computes) + onnxruntime.quantization.quantize_dynamic(QInt8, reduce_range on CPUs without VNNI)")


def ort_session(path: str, threads: int, profile_prefix: str | None = None):
    """An ONNX Runtime CPU session with the torch variants' threads and waiting policy; returns
    ``(session, options as a dict)``. ``profile_prefix``: ORT's own per-operator profiling on, into files
    with that prefix (``benchmarks/profile_ops.py``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    spinning = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return session, {"intra_op_num_threads": threads, "inter_op_num_threads": 1, "allow_spinning": spinning,
                     "graph_optimization_level": str(opts.graph_optimization_level), "onnxruntime": ort.__version__,
                     "providers": session.get_providers()}


def ort_reduce_range() -> bool:
    """7-bit activations for the ORT peer on CPUs without VNNI, as fbgemm does for the kit: its u8 x s8 pair
    sums saturate in int16 there too (docs/performance.md, "Speed and memory"). A peer that answers wrongly
    is not a fair peer."""
    from convert.quantize import cpu_flags

    return not ({"avx512_vnni", "avx_vnni"} & cpu_flags())


def require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise KitError(f"--onnx needs onnx and onnxruntime ({exc.name} is not installed); "
                       "pip install 'clip-mobile-kit[onnx]' (onnx onnxruntime onnxscript)") from None


def export_onnx(manifest: dict[str, Any], loaded, quant, roles: Iterable[str], out_dir: Path
                ) -> dict[str, tuple[Path, int]]:
    """fp32 towers of ``loaded`` (the reference model, structured as the recipe ``quant``) -> ONNX
    (TorchScript-based exporter) -> ``quantize_dynamic`` QInt8. Returns role -> (path, bytes)."""
    require_onnxruntime()
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from convert.head import ZeroShotHead
    from convert.towers import build_towers

    from .worker import manifest_inputs

    shapes = {e["role"]: e["inputs"] for e in manifest["files"] if e.get("format") == "lite"}
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for role in roles:
        x = manifest_inputs(manifest, role, torch)[0]
        if role == "image_encoder":
            module = build_towers(loaded.model, quant, (role,), quantize=False).modules[role]
        elif role == "text_encoder":
            # The export is traced, so a truncating tower would bake one length in: export the full tower
            # with a dynamic length instead, and the worker feeds it the tokens up to the last end-of-text
            # token, the rows the kit's truncating tower computes (``deploy.threads.text_length``).
            module = build_towers(loaded.model, quant, (role,), truncate_text=False, quantize=False).modules[role]
        else:
            d = shapes[role][0]["shape"][-1]
            classes = len((manifest.get("zero_shot") or {}).get("labels") or [1])
            module = ZeroShotHead(torch.nn.functional.normalize(torch.randn(classes, d), dim=-1), 100.0)
        fp32 = out_dir / f"{role}.fp32.onnx"
        int8 = out_dir / f"{role}.int8.onnx"
        with torch.no_grad():
            name = shapes[role][0]["name"]
            torch.onnx.export(module.eval(), (x,), str(fp32), dynamo=False, opset_version=17,
                              input_names=[name], output_names=["output"],
                              dynamic_axes={name: {1: "length"}} if role == "text_encoder" else None)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, reduce_range=ort_reduce_range())
        result[role] = (int8, int8.stat().st_size)
    return result


