"""Run the ``.pte`` files of several artifact directories in *this* interpreter's ExecuTorch runtime, in one process.

    PYTHON benchmarks/arm64/run_pte_arm64.py JOB.json OUTPUTS.npz

Made to run inside an emulated arm64 CPython (qemu user mode, executorch 1.3.1's and torch 2.12.1's aarch64
wheels), where ``import torch`` alone takes ~40 s, so one process runs every file of every directory. The same
script runs on x86 (the kit's venv) to give the numbers it is compared with. Depends on torch, ExecuTorch's
runtime extension, numpy and the standard library only (no kit code).

It calls ExecuTorch's C++ runtime extension (``executorch.extension.pybindings._portable_lib``: load program,
load method, execute), which ``executorch.runtime`` wraps. That wrapper is not imported: its module
``portable_lib.py`` imports ``executorch.exir`` (the exporter: flatbuffers, ruamel.yaml, tabulate, torchao,
...) only for a warning class, and none of that is a runtime. The extension needs torch (it links
``libtorch.so``; its tensors are torch tensors), so torch is imported first.

JOB.json / INPUTS.npz / OUTPUTS.npz: the protocol of ``worker_io.py``; the facts are ``torch_version``,
``executorch_version`` and ``cpu_capability``. The text tower is given each prompt cut as the kit cuts it
(:func:`cut_tokens`).
"""
import json
import sys
import time
from importlib import metadata

import numpy as np
import torch
import worker_io
from executorch.extension.pybindings import _portable_lib


def cut_tokens(tokens, work):
    """One ``[1, n]`` row per prompt, cut after the position the tower pools when ``work.rows_end_at_eot``,
    else the full row.

    A twin of ``convert.export_pte.cut_tokens`` (that module imports the kit's export stack: open_clip,
    torchao, executorch.exir, none of which exist in the emulated sysroot); ``tests/test_arm64.py`` checks
    that both cut every case alike.
    """
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


def run_directory(directory, inputs_path, roles=None, log=None):
    manifest = json.load(open(f"{directory}/manifest.json"))
    inputs = np.load(inputs_path)
    outputs = {}
    for entry, path in worker_io.model_files(directory, manifest, "pte", roles):
        role = entry["role"]
        start = time.perf_counter()
        program = _portable_lib._load_program(path, enable_etdump=False, debug_buffer_size=0,
                                              program_verification=_portable_lib.Verification.InternalConsistency)
        method = program.load_method("forward")
        load_s = time.perf_counter() - start
        x = torch.from_numpy(inputs[role])
        rows = cut_tokens(x, entry.get("work")) if role == "text_encoder" else [x[i:i + 1] for i in range(len(x))]
        outputs[role], call_s = worker_io.run_rows(lambda row: method([row.contiguous()])[0], rows)
        outputs[role + ".load_s"] = np.array(load_s)
        outputs[role + ".call_s"] = np.array(call_s)
        if log:
            log(f"{directory}: {role} load {load_s:.2f} s, {call_s:.2f} s a row")
    return outputs


def set_threads(count):
    """torch's and ExecuTorch's (XNNPACK's threadpool) thread counts."""
    torch.set_num_threads(count)
    if _portable_lib._threadpool_get_thread_count() != count:
        _portable_lib._unsafe_reset_threadpool(count)


def facts():
    return {"torch_version": np.array(torch.__version__),
            "executorch_version": np.array(metadata.version("executorch")),
            "cpu_capability": np.array(torch.backends.cpu.get_cpu_capability())}


if __name__ == "__main__":
    sys.exit(worker_io.main(sys.argv[1:], run_directory, facts, set_threads))
