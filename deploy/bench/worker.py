"""The bench worker: one configuration measured in a fresh process; prints one JSON line.

Imports only the standard library at module level: the OpenMP environment must be set before torch
starts, and rich/numpy/open_clip must not count in the worker's memory baseline.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

# Token ids of "a photo of a dog." in open_clip's CLIP BPE (between sot and eot); any ids time the same.
SAMPLE_TEXT = "a photo of a dog."
SAMPLE_TOKENS = (320, 1125, 539, 320, 1929, 269)


def _proc_status(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status in bytes (Linux; empty elsewhere)."""
    out = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in keys:
                    out[key] = int(value.split()[0]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return out


def _rss_now() -> int:
    rss = _proc_status("VmRSS").get("VmRSS")
    if rss is not None:
        return rss
    import psutil  # pragma: no cover - not Linux

    return int(psutil.Process().memory_info().rss)


def _rss_split() -> dict[str, int]:
    """Anonymous and file-backed resident bytes now."""
    return _proc_status("RssAnon", "RssFile")


def _rss_peak() -> int:
    peak = _proc_status("VmHWM").get("VmHWM")
    if peak is not None:
        return peak
    import resource  # pragma: no cover - not Linux

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _above(now: dict[str, int], base: dict[str, int], key: str) -> int | None:
    return now[key] - base[key] if key in now and key in base else None


def _ms(ns: int) -> float:
    return ns / 1e6


def sample_inputs(specs: Sequence[dict[str, Any]], sot: int, eot: int, torch) -> list:
    """The one bench input for a tower's declared inputs (the manifest's ``files[].inputs``): token ids
    ``sot, SAMPLE_TOKENS, eot`` padded to the context length; anything else seeded normal noise.

    The worker, the ONNX peer's export, the benchmark tools and the tests all build their input here, so
    every runtime is timed on the same input. ``torch`` is passed in: this module imports only the standard
    library.
    """
    gen = torch.Generator().manual_seed(0)
    inputs = []
    for item in specs:
        shape = list(item["shape"])
        if item["dtype"] == "int64":
            tokens = torch.zeros(shape, dtype=torch.int64)
            ids = [sot, *SAMPLE_TOKENS, eot][: shape[-1]]
            tokens[..., : len(ids)] = torch.tensor(ids)
            inputs.append(tokens)
        else:
            inputs.append(torch.randn(shape, generator=gen))
    return inputs


def manifest_inputs(manifest: dict[str, Any], role: str, torch) -> list:
    """:func:`sample_inputs` for ``role`` of an artifact directory's manifest (as read by ``convert.artifact``)."""
    entry = next(e for e in manifest["files"] if e["role"] == role and e.get("inputs"))
    tok = manifest["tokenizer"]
    return sample_inputs(entry["inputs"], tok["sot_token_id"], tok["eot_token_id"], torch)


def _build_eager(spec: dict[str, Any], torch):
    """The eager model rebuilt from the reference config; returns a callable taking the input tensors."""
    import dataclasses

    from convert import build_config
    from convert.head import ZeroShotHead
    from convert.load import load_model
    from convert.towers import build_towers

    role, variant = spec["role"], spec["variant"]
    if role == "zero_shot_head":
        # The head is fp32 in every variant; a [C, D] matmul times the same whatever its values.
        classes, dim = spec["head_shape"]
        weight = torch.nn.functional.normalize(torch.randn(classes, dim), dim=-1)
        return ZeroShotHead(weight, spec.get("logit_scale") or 100.0).eval()
    config = build_config(**spec["config"])
    model = load_model(config).model
    if variant == "eager-fp32":
        return model.encode_image if role == "image_encoder" else model.encode_text
    quant = dataclasses.replace(config.quant, engine=spec["engine"])
    tower = build_towers(model, quant, (role,), truncate_text=config.truncate_text).modules[role]
    del model
    return tower


def worker_main(argv: Sequence[str] | None = None) -> None:
    """Fresh-process measurement of one configuration; prints one JSON line on stdout."""
    spec = json.loads((argv or sys.argv[1:])[0])
    t_import = time.perf_counter_ns()
    import torch

    variant = spec["variant"]
    if variant.startswith("eager"):
        import open_clip  # noqa: F401 - library code, counted in the baseline like torch itself

        import convert.load  # noqa: F401
        import convert.towers  # noqa: F401
    if variant.startswith("onnx"):
        from deploy.bench.peers import ort_session
    if variant == "pte":
        # ExecuTorch's runtime library, counted in the baseline as torch is
        from convert.export_pte import load_pte, set_threads

        set_threads(spec["threads"])
    from deploy import heap, threads
    import_ms = _ms(time.perf_counter_ns() - t_import)
    torch.set_num_threads(spec["threads"])
    if spec.get("engine"):
        torch.backends.quantized.engine = spec["engine"]
    inputs = sample_inputs(spec["inputs"], spec["sot"], spec["eot"], torch)
    baseline = _rss_now()
    split_baseline = _rss_split()

    t0 = time.perf_counter_ns()
    if variant in ("eager-fp32", "eager-int8"):
        module = _build_eager(spec, torch)
        fn = module
    elif variant == "jit":
        # as deploy.artifacts loads (CLIPKIT_HEAP_PHASE=0 turns it off)
        module = heap.load(torch.jit.load, spec["path"], map_location="cpu")
        fn = module
    elif variant == "lite":
        from torch.jit.mobile import _load_for_lite_interpreter

        module = heap.load(_load_for_lite_interpreter, spec["path"])
        fn = module
    elif variant == "pte":
        # as deploy.artifacts loads; the text tower is fed the same [1, context] tokens and cuts them after the
        # end-of-text token itself (convert.export_pte.cut_tokens), where the .ptl tower cuts inside
        module = heap.load(load_pte, spec["path"], spec["role"], spec.get("work"))
        fn = module
    elif variant.startswith("onnx"):
        session, session_options = ort_session(spec["path"], spec["threads"])
        names = [i.name for i in session.get_inputs()]
        if spec["role"] == "text_encoder" and spec.get("truncate_text"):
            # the same positions the kit's tower computes (exported with a dynamic length)
            inputs = [t[:, :threads.text_length(t)] for t in inputs]
            session_options["text_positions"] = int(inputs[0].shape[1])
        arrays = {n: t.numpy() for n, t in zip(names, inputs)}

        def fn(*_):
            return session.run(None, arrays)
    else:
        raise SystemExit(f"unknown variant {variant}")
    load_ms = _ms(time.perf_counter_ns() - t0)
    used: set[int] = set()
    if variant in ("jit", "lite"):  # the kit's runtime sizes each call's threads (deploy.threads)
        module_fn = fn

        def fn(*xs):  # as deploy.runtime calls
            with threads.sized(torch, spec.get("work"), xs[0]) as n, heap.first_call(module):
                used.add(n)
                return module_fn(*xs)

    with torch.no_grad():
        t0 = time.perf_counter_ns()
        fn(*inputs)
        first_ms = _ms(time.perf_counter_ns() - t0)
        split_first = _rss_split()  # packing is done: the anonymous peak is here
        warmup = []
        for _ in range(spec["warmup"]):
            t0 = time.perf_counter_ns()
            fn(*inputs)
            warmup.append(_ms(time.perf_counter_ns() - t0))
        steady = []
        cpu0 = time.process_time_ns()  # the work done: robust to a busy machine, where wall time includes waiting
        for _ in range(spec["iters"]):
            t0 = time.perf_counter_ns()
            fn(*inputs)
            steady.append(_ms(time.perf_counter_ns() - t0))
        cpu_ms = _ms(time.process_time_ns() - cpu0) / max(spec["iters"], 1)
    peak = _rss_peak()
    print(json.dumps({"import_ms": import_ms, "load_ms": load_ms, "first_ms": first_ms, "warmup_ms": warmup,
                      "steady_ms": steady, "cpu_ms": cpu_ms, "rss_baseline_bytes": baseline, "peak_rss_bytes": peak,
                      "anon_after_first_call_bytes": _above(split_first, split_baseline, "RssAnon"),
                      "file_after_first_call_bytes": _above(split_first, split_baseline, "RssFile"),
                      "heap_phase": variant in ("jit", "lite") and heap.active(),
                      "threads_used": sorted(used),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
                      "num_threads": torch.get_num_threads(),
                      "engine": torch.backends.quantized.engine,
                      "session_options": session_options if variant.startswith("onnx") else None}))
