"""Run the ``.ptl`` files of several artifact directories in *this* interpreter's lite runtime, in one process.

    PYTHON benchmarks/arm64/run_lite_arm64.py JOB.json OUTPUTS.npz

Made to run inside an emulated arm64 CPython (qemu user mode, torch 2.1.0's aarch64 wheel: the runtime of
``pytorch_android_lite:2.1.0``), where ``import torch`` alone takes ~25 s, so one process runs every file of
every directory. The same script runs on x86 (torch 2.1.0 in ``.venv21``, torch 2.12.1 in ``.venv``) to give
the numbers it is compared with. Depends on torch, numpy and the standard library only (no kit code).

JOB.json / INPUTS.npz / OUTPUTS.npz: the protocol of ``worker_io.py``; per file this adds
``KEY/ROLE.bytecode``, and the facts ``torch_version``, ``cpu_capability``.
"""
import json
import sys
import time
import zipfile

import numpy as np
import torch
import worker_io
from torch.jit.mobile import _get_model_bytecode_version, _load_for_lite_interpreter

EXTRA_FILE = "clip_kit.json"


def embedded_metadata(path):
    """The kit's ``clip_kit.json`` extra file of a ``.ptl`` (``<archive>/extra/clip_kit.json``), or {}."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith("/extra/" + EXTRA_FILE):
                return json.loads(archive.read(name))
    return {}


def run_directory(directory, inputs_path, roles=None, log=None):
    manifest = json.load(open(f"{directory}/manifest.json"))
    engine = manifest["engine"]
    if engine not in torch.backends.quantized.supported_engines:
        raise SystemExit(f"{directory}: engine {engine!r} is not available here "
                         f"({torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = engine
    inputs = np.load(inputs_path)
    outputs = {}
    for entry, path in worker_io.model_files(directory, manifest, "lite", roles):
        role = entry["role"]
        meta = embedded_metadata(path)
        if meta.get("engine", engine) != engine:  # the host-side check refuses this earlier; never run it
            raise SystemExit(f"{path}: embedded engine {meta.get('engine')!r} != manifest engine {engine!r}")
        start = time.perf_counter()
        module = _load_for_lite_interpreter(path)
        load_s = time.perf_counter() - start
        x = torch.from_numpy(inputs[role])
        with torch.no_grad():
            outputs[role], call_s = worker_io.run_rows(module, [x[i:i + 1] for i in range(x.shape[0])])
        outputs[role + ".bytecode"] = np.array(_get_model_bytecode_version(path))
        outputs[role + ".load_s"] = np.array(load_s)
        outputs[role + ".call_s"] = np.array(call_s)
        if log:
            log(f"{directory}: {role} load {load_s:.2f} s, {call_s:.2f} s a row")
    return outputs


def facts():
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = "?"
    return {"torch_version": np.array(torch.__version__), "cpu_capability": np.array(capability)}


if __name__ == "__main__":
    sys.exit(worker_io.main(sys.argv[1:], run_directory, facts, torch.set_num_threads))
