"""What the arm64 workers (``run_lite_arm64.py``, ``run_pte_arm64.py``) share: the job and output protocol
and the CPU facts. Standard library + numpy only; each worker brings its runtime.

JOB.json: ``{"runs": [{"key": "int8", "dir": ARTIFACT_DIR, "inputs": INPUTS.npz}, ...],
"roles": [optional subset], "threads": 1, "verbose": false}``. INPUTS.npz holds one array per role; each
row is run on its own (batch 1, as the app calls the model: dynamic int8 takes its activation range over the
whole batch, so batching would change the numbers). OUTPUTS.npz holds ``KEY/ROLE`` (rows stacked),
``KEY/ROLE.load_s``, ``KEY/ROLE.call_s`` (mean per row) and what the worker adds per file, plus the
runtime's facts (``torch_version``, ``cpu_capability``, ...), ``machine``, ``hwcaps`` and ``wall_s``.
"""
import json
import platform
import struct
import sys
import time

import numpy as np

# AT_HWCAP / AT_HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h) that pick qnnpack/XNNPACK kernels.
HWCAP_NAMES = {(16, 8): "atomics", (16, 9): "fphp", (16, 10): "asimdhp", (16, 20): "asimddp", (16, 22): "sve",
               (26, 1): "sve2", (26, 13): "i8mm", (26, 14): "bf16", (26, 23): "sme", (26, 37): "sme2"}


def hwcaps():
    """The CPU features the (emulated) kernel reports to this process, from /proc/self/auxv."""
    try:
        raw = open("/proc/self/auxv", "rb").read()
        aux = dict(struct.iter_unpack("QQ", raw[: len(raw) // 16 * 16]))
    except (OSError, struct.error):
        return "?"
    return " ".join(n for (key, bit), n in HWCAP_NAMES.items() if aux.get(key, 0) >> bit & 1) or "-"


def model_files(directory, manifest, fmt, roles=None):
    """``(entry, path)`` of every ``files[]`` entry of format ``fmt`` (and of ``roles``, all when None)."""
    return [(e, f"{directory}/{e['file']}") for e in manifest["files"]
            if e["format"] == fmt and (not roles or e["role"] in roles)]


def run_rows(call, rows):
    """``call`` on each input row (a list of ``[1, ...]`` tensors); (outputs stacked as numpy, s per row)."""
    outs = []
    start = time.perf_counter()
    for row in rows:
        # a copy: a runtime may hand back a view of memory it reuses on the next call
        outs.append(np.array(call(row), copy=True))
    return np.concatenate(outs, axis=0), (time.perf_counter() - start) / max(1, len(rows))


def main(argv, run_directory, facts, set_threads):
    """Run a job: ``set_threads(job's threads)``, then ``run_directory(directory, inputs_path, roles, log) ->
    {name: array}`` for every run of JOB.json; write OUTPUTS.npz with ``facts()`` (the runtime's versions,
    as arrays). Returns 0."""
    job_path, outputs_path = argv[:2]
    start = time.perf_counter()
    job = json.load(open(job_path))
    set_threads(int(job.get("threads", 1)))
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if job.get("verbose") else None
    results = {}
    for run in job["runs"]:
        for name, value in run_directory(run["dir"], run["inputs"], job.get("roles"), log).items():
            results[f"{run['key']}/{name}"] = value
    np.savez(outputs_path, machine=np.array(platform.machine()),
             hwcaps=np.array(hwcaps() if platform.machine() == "aarch64" else "-"),
             wall_s=np.array(time.perf_counter() - start), **facts(), **results)
    return 0
