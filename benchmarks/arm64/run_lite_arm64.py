"""Run the ``.ptl`` files of several artifact directories in *this* interpreter's lite runtime, in one process.

    PYTHON benchmarks/arm64/run_lite_arm64.py JOB.json OUTPUTS.npz

Made to run inside an emulated arm64 CPython (qemu user mode, torch 2.1.0's aarch64 wheel: the runtime of
``pytorch_android_lite:2.1.0``), where ``import torch`` alone takes ~25 s, so one process runs every file of
every directory. The same script runs on x86 (torch 2.1.0 in ``.venv21``, torch 2.12.1 in ``.venv``) to give
the numbers it is compared with. Depends on torch, numpy and the standard library only (no kit code).

JOB.json: ``{"runs": [{"key": "int8", "dir": ARTIFACT_DIR, "inputs": INPUTS.npz}, ...],
"roles": [optional subset], "threads": 1}``. INPUTS.npz holds one array per role; each row is run on its
own (batch 1, as the app calls the model: dynamic int8 takes its activation range over the whole batch, so
batching would change the numbers). OUTPUTS.npz holds ``KEY/ROLE`` (rows stacked), ``KEY/ROLE.bytecode``,
``KEY/ROLE.load_s``, ``KEY/ROLE.call_s`` (mean per row), and ``torch_version``, ``machine``,
``cpu_capability``, ``hwcaps``.
"""
import json
import platform
import struct
import sys
import time
import zipfile

import numpy as np
import torch
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
    for entry in manifest["files"]:
        if entry["format"] != "lite" or (roles and entry["role"] not in roles):
            continue
        role, path = entry["role"], f"{directory}/{entry['file']}"
        meta = embedded_metadata(path)
        if meta.get("engine", engine) != engine:  # the host-side check refuses this earlier; never run it
            raise SystemExit(f"{path}: embedded engine {meta.get('engine')!r} != manifest engine {engine!r}")
        start = time.perf_counter()
        module = _load_for_lite_interpreter(path)
        load_s = time.perf_counter() - start
        x = torch.from_numpy(inputs[role])
        rows = []
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(x.shape[0]):
                rows.append(module(x[i:i + 1]).numpy())
        call_s = (time.perf_counter() - start) / max(1, x.shape[0])
        outputs[role] = np.concatenate(rows, axis=0)
        outputs[role + ".bytecode"] = np.array(_get_model_bytecode_version(path))
        outputs[role + ".load_s"] = np.array(load_s)
        outputs[role + ".call_s"] = np.array(call_s)
        if log:
            log(f"{directory}: {role} load {load_s:.2f} s, {call_s:.2f} s a row")
    return outputs


# AT_HWCAP / AT_HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h) that pick qnnpack/XNNPACK kernels.
HWCAP_NAMES = {(16, 8): "atomics", (16, 9): "fphp", (16, 10): "asimdhp", (16, 20): "asimddp", (16, 22): "sve",
               (26, 1): "sve2", (26, 13): "i8mm", (26, 14): "bf16"}


def hwcaps():
    """The CPU features the (emulated) kernel reports to this process, from /proc/self/auxv."""
    try:
        raw = open("/proc/self/auxv", "rb").read()
        aux = dict(struct.iter_unpack("QQ", raw[: len(raw) // 16 * 16]))
    except (OSError, struct.error):
        return "?"
    return " ".join(n for (key, bit), n in HWCAP_NAMES.items() if aux.get(key, 0) >> bit & 1) or "-"


def main(job_path, outputs_path):
    start = time.perf_counter()
    job = json.load(open(job_path))
    torch.set_num_threads(int(job.get("threads", 1)))
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if job.get("verbose") else None
    results = {}
    for run in job["runs"]:
        for name, value in run_directory(run["dir"], run["inputs"], job.get("roles"), log).items():
            results[f"{run['key']}/{name}"] = value
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = "?"
    np.savez(outputs_path, torch_version=np.array(torch.__version__), machine=np.array(platform.machine()),
             cpu_capability=np.array(capability), hwcaps=np.array(hwcaps() if platform.machine() == "aarch64" else "-"), wall_s=np.array(time.perf_counter() - start), **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
