"""arm64 parity: run android artifacts in the phone's runtime on arm64 code (qemu user mode) and compare.

    python benchmarks/arm64/parity.py [NAME=]DIR ... [--format ptl|pte] [--cpus ...] [--rows N] [--direct] [--json OUT]
    python benchmarks/arm64/parity.py --tiny OUT_ROOT       # convert the tiny check's sets first (+ --direct)
    python benchmarks/arm64/parity.py --tiny OUT_ROOT --format pte    # the same for the .pte files
    python benchmarks/arm64/parity.py --vitb32 OUT_ROOT --rows 2      # ViT-B-32, random init (20-40 min)
    python benchmarks/arm64/parity.py --mobileclip OUT_ROOT --rows 2  # MobileCLIP2-S0, random init

Every int8 directory needs the fp32 export (``--quantize none``) of the same model (name, weights, seed,
zero-shot labels and templates) among the directories: it is the reference, matched automatically.

The phone's runtime is torch 2.1.0's lite interpreter (``pytorch_android_lite:2.1.0``). Its aarch64 wheel
runs here under ``qemu-aarch64-static -L SYSROOT -cpu MODEL`` in an arm64 Debian sysroot
(``setup_sysroot.sh``, cached). Each CPU model gets ONE emulated Python process that runs every file of
every directory (``run_lite_arm64.py``; ``import torch`` alone takes ~25 s emulated); x86 torch 2.1.0
(``.venv21``, CLIPKIT_RUNTIME21_PYTHON) and x86 torch 2.12.1 (this interpreter) run the same worker on the
same inputs, one row at a time (batch 1, as the app calls the towers).

What is compared (per output row):
- arm64 vs x86 torch 2.1.0, directly: cosine, max abs, max rel (= max abs / the row's largest |x86| value);
- every int8 file's error against the fp32 export of the same model (``--quantize none``, same seed and
  weights) run in x86 torch 2.12.1, the kit's own runtime: ``err = ||y - y_fp32|| / ||y_fp32||``.

The gate (see README.md for the measurements behind the numbers):
- int8 files: ``err_arm64 <= FACTOR * max(err_x86_2.1.0, err_x86_2.12.1) + ABS_SLACK`` per row. A direct
  arm64-vs-x86 threshold is the wrong gate for a big model: dynamic int8 re-rounds activations at every
  layer, so ViT-B-32 arm64 vs x86 lands at cosine 0.9998-0.9999, the same spread as x86 torch 2.12 vs 2.1;
  what matters is that arm64 is not further from fp32 than x86 is.
- the fp32 export: arm64 vs x86 directly (only summation order differs).
- with ``--direct`` (the tiny model): also arm64 vs x86 torch 2.1.0 directly, every file.

Refuses, before any emulation, a directory converted for x86: both ``manifest.json`` (target/engine) and
each ``.ptl``'s embedded ``clip_kit.json`` must say android/qnnpack.

``--format pte``: the ``.pte`` files instead, in ExecuTorch 1.3.1's aarch64 runtime (with torch 2.12.1, which
its runtime extension links; ``run_pte_arm64.py``, the sysroot's ``site-pte``), compared with the same files
in the kit's x86 ExecuTorch; the same gates, with that one x86 run as both the direct base and the error
reference (:data:`FORMATS`).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from convert.entry import run_command, set_openmp_default  # noqa: E402 - no torch in convert.entry
from convert.errors import KitError  # noqa: E402

SETUP = HERE / "setup_sysroot.sh"
CPU_MODELS = ("cortex-a53", "cortex-a76", "max")
QEMU = "qemu-aarch64-static"

# Gate constants, chosen from measurements (README.md, "Choosing the gate").
FACTOR = 1.5          # arm64's int8 error may be at most 1.5x the larger of the two x86 errors ...
ABS_SLACK = 1e-5      # ... plus fp32 summation-order noise (fp32 head/export rows have err ~1e-7)
FP32_MIN_COSINE = 1 - 1e-6   # the --quantize none export, arm64 vs x86: summation order only
FP32_MAX_REL = 1e-4
DIRECT_MIN_COSINE = 0.9999   # --direct (tiny): arm64 vs x86 torch 2.1.0, int8 files
DIRECT_MAX_REL = 2e-2


class ParityError(KitError):
    """A refusal or a failed set-up/run (exit 2); a worker's failure quotes the end of its stderr."""


# qemu's `max` without SME. With SME (qemu 7.2, Debian bookworm's), XNNPACK's dynamic-int8 .pte kernels give
# wrong answers (measured: tiny image tower cosine 0.35 against x86, text -0.36; fp32 files and
# `max,sme=off` agree to 1e-6): qemu 7.2's early SME emulation or the SME kernels, which only a phone
# with SME could tell apart (README.md, "The .pte rows"). The .ptl runtime has no SME code: it keeps `max`.
MAX_WITHOUT_SME = "max,sme=off"


@dataclass(frozen=True)
class Format:
    """How the files of one artifact format are run on arm64 and compared (one row of :data:`FORMATS`)."""
    manifest_format: str       # files[].format
    suffix: str
    worker: Path               # run on x86 and, emulated, on arm64
    site: str                  # the emulated Python's site directory in the cache (setup_sysroot.sh)
    emulated: dict             # facts every emulated run must report: name -> version prefix
    base: str                  # the x86 run arm64 is compared with directly ("direct" figures)
    reference: str             # the x86 run whose output of the fp32 export is the reference ("err")
    x86_runs: tuple            # (run name, "kit" | "runtime21"): which x86 Python runs the worker
    cpus: tuple = CPU_MODELS   # qemu -cpu values


FORMATS = {
    # the phone's TorchScript runtime: torch 2.1.0 (pytorch_android_lite:2.1.0); x86 runs both torch versions
    "ptl": Format("lite", ".ptl", HERE / "run_lite_arm64.py", "site", {"torch_version": "2.1.0"},
                  base="x86 torch 2.1.0", reference="x86 torch 2.12.1",
                  x86_runs=(("x86 torch 2.12.1", "kit"), ("x86 torch 2.1.0", "runtime21"))),
    # ExecuTorch: the same release on both sides (1.3.1 with torch 2.12.1), so x86 has one run
    "pte": Format("pte", ".pte", HERE / "run_pte_arm64.py", "site-pte",
                  {"torch_version": "2.12.1", "executorch_version": "1.3.1"},
                  base="x86 executorch 1.3.1", reference="x86 executorch 1.3.1",
                  x86_runs=(("x86 executorch 1.3.1", "kit"),), cpus=("cortex-a53", "cortex-a76", MAX_WITHOUT_SME)),
}


# ------------------------------------------------------------------------------------ wrong-target check
def check_android_artifacts(directory, fmt: str = "ptl") -> dict:
    """The manifest of an artifact directory with ``fmt`` files for a phone, or ParityError naming what is wrong.

    The kit's one reader (``convert.artifact``) checks the manifest, every file's size, sha256 and embedded
    metadata (so a copied-in x86 ``.ptl`` is named as such), then, for ``.ptl``, the target: a phone runs
    qnnpack. (A ``.pte`` has no engine: its XNNPACK program is the same whatever ``--target`` said.)
    Runs before any emulation starts.
    """
    from convert.artifact import require_target, verify_artifacts
    from convert.errors import ArtifactError

    spec = FORMATS[fmt]
    directory = Path(directory).absolute()
    try:
        verified = verify_artifacts(directory, formats=(spec.manifest_format,), require_image=False)
        if fmt == "ptl":
            require_target(verified.manifest, "android", "a phone", where=str(directory))
    except ArtifactError as exc:
        raise ParityError(str(exc)) from None
    if not any(f == spec.manifest_format for _, f in verified.paths):
        raise ParityError(f"{directory}: the manifest lists no {spec.suffix} file")
    return verified.manifest


# ---------------------------------------------------------------------------------------------- set-up
def cache_root() -> Path:
    return Path(os.environ.get("CLIPKIT_CACHE") or Path.home() / ".cache" / "clip-mobile-kit") / "arm64"


def sysroot_ready(root: Path | None = None) -> bool:
    root = root or cache_root()
    return (root / ".complete").is_file() and (root / "sysroot" / "usr" / "bin" / "python3.11").exists()


def ensure_sysroot(log=print) -> Path:
    """Run ``setup_sysroot.sh`` (a no-op when the cache is complete and current); returns the cache root."""
    if shutil.which(QEMU) is None:
        raise ParityError(f"{QEMU} not found: apt-get install qemu-user-static (or run .ci/arm64.sh)")
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ParityError(f"arm64 sysroot set-up failed:\n{proc.stderr[-3000:]}")
    log(f"arm64 sysroot ready in {time.perf_counter() - start:.1f} s ({proc.stderr.strip().splitlines()[-1]})")
    return Path(proc.stdout.strip().splitlines()[-1])


def emulated_command(root: Path, cpu: str, site: str = "site") -> tuple[list[str], dict]:
    sysroot = root / "sysroot"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "PYTHONPATH": str(root / site), "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    return [QEMU, "-L", str(sysroot), "-cpu", cpu, str(sysroot / "usr" / "bin" / "python3.11")], env


def host_command(python: str) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    return [python], env


def runtime21_python() -> str | None:
    python = os.environ.get("CLIPKIT_RUNTIME21_PYTHON")
    if python:
        return python
    local = REPO / ".venv21" / "bin" / "python"
    return str(local) if local.exists() else None


# ---------------------------------------------------------------------------------------------- inputs
def make_inputs(manifest: dict, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed inputs per role: normalised-image-like noise, prompts of several lengths, embeddings."""
    rng = np.random.default_rng(seed)
    tok = manifest["tokenizer"]
    ctx, sot, eot = tok["context_length"], tok["sot_token_id"], tok["eot_token_id"]
    tokens = np.zeros((rows, ctx), dtype=np.int64)
    for i in range(rows):
        length = min(ctx - 2, [3, 7, 12, ctx - 2][i % 4])   # words, then a full context
        tokens[i, 0] = sot
        tokens[i, 1:1 + length] = rng.integers(256, 49152, size=length)
        tokens[i, 1 + length] = eot
    return {
        "image_encoder": rng.standard_normal((rows, 3, *manifest["preprocess"]["image_size"])).astype(np.float32),
        "text_encoder": tokens,
        "zero_shot_head": rng.standard_normal((rows, manifest["model"]["embed_dim"])).astype(np.float32),
    }


# ------------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    name: str                 # "arm64 cortex-a53", "x86 torch 2.1.0", ...
    command: list[str]
    env: dict
    worker: Path = FORMATS["ptl"].worker
    outputs: dict = field(default_factory=dict)
    seconds: float = 0.0


def run_worker(run: Run, job: dict, workdir: Path) -> Run:
    tag = run.name.replace(" ", "_")
    job_path, out_path = workdir / f"job-{tag}.json", workdir / f"out-{tag}.npz"
    job_path.write_text(json.dumps(job))
    start = time.perf_counter()
    proc = subprocess.run(run.command + [str(run.worker), str(job_path), str(out_path)], env=run.env,
                          capture_output=True, text=True)
    run.seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise ParityError(f"{run.name}: worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with np.load(out_path) as data:
        run.outputs = {k: data[k] for k in data.files}
    return run


# ------------------------------------------------------------------------------------------- comparison
def row_stats(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of ``a`` against ``b``: cosine, max abs, max rel (max abs / max |b|), rel L2 error."""
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    diff = np.abs(a - b)
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(1) / np.maximum(norm_a * norm_b, 1e-30)
    return {"cosine": cosine, "max_abs": diff.max(1),
            "max_rel": diff.max(1) / np.maximum(np.abs(b).max(1), 1e-30),
            "err": np.linalg.norm(a - b, axis=1) / np.maximum(norm_b, 1e-30)}


@dataclass
class Line:
    """One (set, role, arm64 CPU model) row of the report; the figures are worst cases over the input rows."""
    set: str
    role: str
    cpu: str
    cosine: float             # arm64 vs x86 torch 2.1.0: min over rows
    max_abs: float            # ... max over rows
    max_rel: float            # ... max over rows of (max abs / the row's max |x86|)
    identical: bool
    err_arm: float | None = None    # int8 sets: ||arm64 - fp32|| / ||fp32||, max over rows
    err_x86: float | None = None    # the same for max(x86 2.1.0, x86 2.12.1)
    ratio: float | None = None      # max over rows of err_arm / err_x86 (rows where err_x86 > NOISE)
    x86_spread: float | None = None  # max over rows of err_x86_2.1.0 / err_x86_2.12.1 (and its inverse)
    gate: str = ""
    ok: bool = True
    why: list = field(default_factory=list)
    rows: dict = field(default_factory=dict)   # per-row arrays (JSON report)


NOISE = 1e-4   # below this the error against fp32 is fp32 summation order, not int8 rounding


def _ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    keep = den > NOISE
    return float((num[keep] / den[keep]).max()) if keep.any() else None


def compare(sets: dict[str, str], references: dict[str, str], arm: dict[str, Run], x86: dict[str, Run],
            roles: list[str], direct: bool, factor: float = FACTOR, fmt: str = "ptl") -> list[Line]:
    """``sets``: name -> kind ('int8' or 'fp32'); ``references``: name -> its fp32 set's name; ``x86``: the
    format's x86 runs by name (:data:`FORMATS`): arm64 is compared directly with ``base``, every error is
    measured against ``reference``'s output of the fp32 export, and x86's error is the largest of its runs'."""
    spec = FORMATS[fmt]
    base21, base212 = x86[spec.base].outputs, x86[spec.reference].outputs
    lines = []
    for set_name, kind in sets.items():
        for role in roles:
            key = f"{set_name}/{role}"
            if key not in base21:
                continue
            ref = base212[f"{references[set_name]}/{role}"]
            e21 = row_stats(base21[key], ref)["err"]
            e212 = row_stats(base212[key], ref)["err"]
            ex86 = np.maximum(e21, e212)   # one run (pte): the same array twice
            for cpu, run in arm.items():
                y = run.outputs[key]
                d = row_stats(y, base21[key])
                line = Line(set_name, role, cpu, float(d["cosine"].min()), float(d["max_abs"].max()),
                            float(d["max_rel"].max()), bool(np.array_equal(y, base21[key])))
                line.rows = {k: v.tolist() for k, v in d.items()}
                if kind == "fp32":
                    line.gate = "fp32 direct"
                    if line.cosine < FP32_MIN_COSINE or line.max_rel > FP32_MAX_REL:
                        line.why.append(f"fp32 export differs from x86: cosine {line.cosine:.8f}, "
                                        f"max rel {line.max_rel:.2e}")
                else:
                    earm = row_stats(y, ref)["err"]
                    line.rows.update(err_arm=earm.tolist(), err_x86=ex86.tolist())
                    if spec.base != spec.reference:
                        line.rows.update(err_x86_210=e21.tolist(), err_x86_2121=e212.tolist())
                    line.err_arm, line.err_x86 = float(earm.max()), float(ex86.max())
                    line.ratio = _ratio(earm, ex86)
                    spread = [r for r in (_ratio(e21, e212), _ratio(e212, e21)) if r is not None]
                    line.x86_spread = max(spread) if spread and spec.base != spec.reference else None
                    line.gate = f"err<={factor:g}x x86"
                    bad = earm > factor * ex86 + ABS_SLACK
                    if bad.any():
                        i = int(np.argmax(bad))
                        line.why.append(f"row {i}: error vs fp32 {earm[i]:.3e} > {factor:g} x x86's "
                                        f"{ex86[i]:.3e} (+{ABS_SLACK:g})")
                    if direct:
                        line.gate += " + direct"
                        if line.cosine < DIRECT_MIN_COSINE or line.max_rel > DIRECT_MAX_REL:
                            line.why.append(f"arm64 vs x86: cosine {line.cosine:.6f} (min {DIRECT_MIN_COSINE}), "
                                            f"max rel {line.max_rel:.2e} (max {DIRECT_MAX_REL:g})")
                line.ok = not line.why
                lines.append(line)
    return lines


def format_table(lines: list[Line], fmt: str = "ptl") -> str:
    """A readable table: one line per (set, role, CPU model); worst case over the input rows."""
    w = max([len("set")] + [len(ln.set) for ln in lines])
    c = max([10] + [len(ln.cpu) for ln in lines])
    head = (f"{'set':<{w}} {'role':<14} {'cpu':<{c}} {'cosine':>10} {'max abs':>8} {'max rel':>8} "
            f"{'err arm64':>9} {'err x86':>8} {'ratio':>5} {'x86 2.1/2.12':>12}  {'gate':<22} result")
    out = [head, "-" * len(head)]
    for ln in lines:
        num = (lambda v, f: "-" if v is None else format(v, f))
        cos = "identical" if ln.identical else f"{ln.cosine:.7f}"
        out.append(f"{ln.set:<{w}} {ln.role:<14} {ln.cpu:<{c}} {cos:>10} {ln.max_abs:>8.1e} {ln.max_rel:>8.1e} "
                   f"{num(ln.err_arm, '9.2e'):>9} {num(ln.err_x86, '8.2e'):>8} {num(ln.ratio, '5.2f'):>5} "
                   f"{num(ln.x86_spread, '12.2f'):>12}  {ln.gate:<22} "
                   f"{'ok' if ln.ok else 'FAIL: ' + '; '.join(ln.why)}")
    if fmt == "ptl":
        out.append("cosine / max abs / max rel: arm64 vs x86 torch 2.1.0 (max rel = max abs / the row's max |x86|); "
                   "err: ||y - y_fp32|| / ||y_fp32|| against the --quantize none export in x86 torch 2.12.1, "
                   "err x86 = max(torch 2.1.0, 2.12.1); ratio = err arm64 / err x86; x86 2.1/2.12: the same ratio "
                   "between the two x86 torch versions (the version noise); all worst over the input rows.")
    else:
        out.append(f"cosine / max abs / max rel: arm64 vs {FORMATS[fmt].base} (max rel = max abs / the row's max "
                   "|x86|); err: ||y - y_fp32|| / ||y_fp32|| against the --quantize none export's .pte on x86; "
                   "ratio = err arm64 / err x86; all worst over the input rows.")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ the check
@dataclass
class Report:
    lines: list
    seconds: dict
    versions: dict
    table: str
    timing: dict = field(default_factory=dict)   # run -> "set/role" -> [load s, s per row]
    format: str = "ptl"

    @property
    def ok(self) -> bool:
        return all(ln.ok for ln in self.lines)

    def to_json(self) -> dict:
        return {"format": self.format, "ok": self.ok, "seconds": self.seconds, "versions": self.versions, "timing": self.timing,
                "gate": {"factor": FACTOR, "abs_slack": ABS_SLACK, "fp32_min_cosine": FP32_MIN_COSINE,
                         "fp32_max_rel": FP32_MAX_REL, "direct_min_cosine": DIRECT_MIN_COSINE,
                         "direct_max_rel": DIRECT_MAX_REL},
                "lines": [ln.__dict__ for ln in self.lines]}


def model_identity(manifest: dict) -> tuple:
    """What makes two conversions the same model: name, weights (tag or checkpoint hash), seed, and the
    zero-shot head's labels and templates (the head's weights are the fp32 text embeddings of those)."""
    m, z = manifest["model"], manifest.get("zero_shot") or {}
    return (m.get("name"), m.get("pretrained"), m.get("checkpoint_sha256") or m.get("checkpoint"), m.get("seed"),
            tuple(z.get("labels") or ()), z.get("templates"))


def plan_sets(manifests: dict[str, dict]) -> tuple[dict[str, str], dict[str, str]]:
    """(kind per set: 'int8' or 'fp32', the fp32 reference set of every set); ParityError when an int8 set
    has no ``--quantize none`` export of the same model beside it."""
    kinds = {n: ("fp32" if m["config"].get("quantize") == "none" else "int8") for n, m in manifests.items()}
    fp32 = {model_identity(manifests[n]): n for n, k in kinds.items() if k == "fp32"}
    references = {}
    for name, manifest in manifests.items():
        ident = model_identity(manifest)
        if ident not in fp32:
            raise ParityError(f"{name}: no fp32 export (--quantize none) of the same model {ident} among the "
                              f"directories: the gate compares each int8 file's error against it")
        references[name] = fp32[ident]
    return kinds, references


def runtime_facts(run: Run) -> str:
    """``2.1.0 aarch64 NEON [hwcaps]`` (torch, machine, kernel level, CPU features); ``executorch 1.3.1 torch
    2.12.1 ...`` for an ExecuTorch run."""
    o = run.outputs
    et = f"executorch {o['executorch_version']} torch " if "executorch_version" in o else ""
    return f"{et}{o['torch_version']} {o['machine']} {o['cpu_capability']} [{o['hwcaps']}]"


def run_parity(sets: dict[str, Path], *, fmt: str = "ptl", cpus=None, rows: int = 4, direct: bool = False,
               python21: str | None = None, jobs: int = 2, root: Path | None = None, workdir: Path | None = None,
               factor: float = FACTOR, log=print) -> Report:
    """Check the ``fmt`` files (``ptl`` or ``pte``) of every artifact directory in ``sets`` (name -> dir) on
    every arm64 CPU model.

    Each int8 set is compared with the fp32 export (``quantize='none'``) of the same model among ``sets``;
    every CPU model (default: the format's :data:`FORMATS` ``cpus``) gets one emulated process that runs all
    files of all sets.
    """
    t0 = time.perf_counter()
    spec = FORMATS[fmt]
    cpus = tuple(cpus or spec.cpus)
    manifests = {name: check_android_artifacts(d, fmt) for name, d in sets.items()}   # before any emulation
    kinds, references = plan_sets(manifests)
    pythons = {"kit": sys.executable}
    if any(which == "runtime21" for _, which in spec.x86_runs):
        pythons["runtime21"] = python21 or runtime21_python()
        if not pythons["runtime21"]:
            raise ParityError("no x86 torch 2.1.0 Python: set CLIPKIT_RUNTIME21_PYTHON (or make .venv21)")
    root = root or ensure_sysroot(log)
    seconds = {"set-up": round(time.perf_counter() - t0, 1)}

    own = Path(tempfile.mkdtemp(prefix="arm64-parity-")) if workdir is None else None
    workdir = Path(workdir or own).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        runs_in_job = []
        for name, directory in sets.items():
            inputs = workdir / f"inputs-{references[name]}.npz"   # one input set per model
            if not inputs.exists():
                np.savez(inputs, **make_inputs(manifests[references[name]], rows))
            runs_in_job.append({"key": name, "dir": str(Path(directory).resolve()), "inputs": str(inputs)})
        job = {"runs": runs_in_job, "threads": 1}
        runs = [Run(name, *host_command(pythons[which]), worker=spec.worker) for name, which in spec.x86_runs]
        runs += [Run(f"arm64 {cpu}", *emulated_command(root, cpu, spec.site), worker=spec.worker) for cpu in cpus]
        # The slowest (emulated) first, so that two of them share the 2 cores and x86 fills the gaps.
        runs.sort(key=lambda r: not r.name.startswith("arm64"))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            done = list(pool.map(lambda r: run_worker(r, job, workdir), runs))
        for r in done:
            seconds[r.name] = round(r.seconds, 1)
            log(f"{r.name}: {r.seconds:.1f} s ({runtime_facts(r)})")
        arm = {r.name.split(" ", 1)[1]: r for r in done if r.name.startswith("arm64")}
        x86 = {r.name: r for r in done if not r.name.startswith("arm64")}
        for r in arm.values():
            wrong = {k: str(r.outputs[k]) for k, v in spec.emulated.items() if not str(r.outputs[k]).startswith(v)}
            if wrong or str(r.outputs["machine"]) != "aarch64":
                raise ParityError(f"emulated worker ran {runtime_facts(r)}; expected {spec.emulated} on aarch64")
        roles = sorted({e["role"] for m in manifests.values() for e in m["files"]
                        if e["format"] == spec.manifest_format})
        lines = compare(kinds, references, arm, x86, roles, direct, factor, fmt)
        versions = {r.name: runtime_facts(r) for r in done}
        seconds["total"] = round(time.perf_counter() - t0, 1)
        timing = {r.name: {k[:-len(".call_s")]: [round(float(r.outputs[k[:-len(".call_s")] + ".load_s"]), 3),
                                                  round(float(r.outputs[k]), 3)]
                           for k in r.outputs if k.endswith(".call_s")} for r in done}
        return Report(lines, seconds, versions, format_table(lines, fmt), timing, fmt)
    finally:
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


# ---------------------------------------------------------------------------------------- conversions
TINY_KEEP_FP32 = ("image_encoder.*.mlp.c_fc", "text_encoder.*.mlp.c_proj")
# name -> options over the model's: the default recipe, one keeping some modules fp32, the fp32 export.
VARIANTS = {"int8": {}, "keep-fp32": {"keep_fp32": TINY_KEEP_FP32}, "fp32": {"quantize": "none"}}


def tiny_model_options(**overrides) -> dict:
    """``tests/conftest.py``'s tiny_options: the tiny architecture with seeded random weights."""
    opts = dict(model="kit-tiny-clip", pretrained="none", labels=("red circle", "blue square", "green star"),
                templates="plain", seed=0)
    opts.update(overrides)
    return opts


def convert_sets(out_root: Path, variants: dict[str, dict], **model) -> dict[str, Path]:
    """Android conversions of one model through the kit's public API (``convert.build_config``,
    ``convert.convert``, the result's ``out_dir``); returns name -> directory."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from convert import build_config, convert

    sets = {}
    for name, extra in variants.items():
        result = convert(build_config(**{**model, **extra}, out=str(Path(out_root) / name), force=True))
        sets[name] = Path(result.out_dir)
    return sets


def tiny_sets(out_root: Path, fmt: str = "ptl") -> dict[str, Path]:
    """The tiny check's directories. ``.ptl``: five, random-init tiny (default, keep-fp32, fp32) and the
    built-in trained tiny CLIP that ``python -m convert`` ships (default and its fp32 export). ``.pte``: the
    two built-in ones (ExecuTorch's export is the slow part: a tiny ``--format both`` conversion took 4-7 min
    on this loaded 2-core machine)."""
    if fmt == "pte":
        trained = convert_sets(out_root / "builtin-pte", {k: {**VARIANTS[k], "format": "pte"} for k in ("int8", "fp32")},
                               **tiny_model_options(pretrained="builtin"))
        return {f"builtin-{k}": v for k, v in trained.items()}
    sets = convert_sets(out_root / "random", VARIANTS, **tiny_model_options())
    trained = convert_sets(out_root / "builtin", {k: VARIANTS[k] for k in ("int8", "fp32")},
                           **tiny_model_options(pretrained="builtin"))
    sets.update({f"builtin-{k}": v for k, v in trained.items()})
    return sets


VITB32_KEEP_FP32_RECIPE = REPO / "benchmarks" / "results" / "sensitivity" / "ViT-B-32-per-channel-target-0.9999.yaml"


def vitb32_sets(out_root: Path) -> dict[str, Path]:
    """ViT-B-32 with seeded random weights (no network): the default android recipe, the sensitivity recipe
    that keeps 22 module groups fp32 (docs/performance.md, "Per-tower fidelity"), and the fp32 export (~1 min each)."""
    variants = {"int8": {}, "keep-fp32": {"recipe": str(VITB32_KEEP_FP32_RECIPE)}, "fp32": {"quantize": "none"}}
    return convert_sets(out_root, variants, model="ViT-B-32", pretrained="none", labels=("cat", "dog", "car"),
                        templates="plain", seed=0)


def split_cpus(text: str) -> tuple[str, ...]:
    """``"cortex-a53,max,sme=off"`` -> ``("cortex-a53", "max,sme=off")``: a ``key=value`` is the previous
    model's qemu property."""
    cpus: list[str] = []
    for item in text.split(","):
        if "=" in item and cpus:
            cpus[-1] += "," + item
        else:
            cpus.append(item)
    return tuple(cpus)


def mobileclip_sets(out_root: Path) -> dict[str, Path]:
    """MobileCLIP2-S0 with seeded random weights (its FastViT image tower reparameterized; convolutions fp32 in
    the `.ptl`): the default android recipe and its fp32 export (~1 min each)."""
    return convert_sets(out_root, {k: VARIANTS[k] for k in ("int8", "fp32")}, model="MobileCLIP2-S0",
                        pretrained="none", labels=("cat", "dog", "car"), templates="plain", seed=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="*", help="android artifact directories (NAME=DIR or DIR), each int8 one "
                        "with the fp32 export (--quantize none) of the same model among them")
    parser.add_argument("--format", choices=sorted(FORMATS), default="ptl",
                        help="which files to run: ptl (torch 2.1.0 lite) or pte (ExecuTorch 1.3.1) (default: %(default)s)")
    parser.add_argument("--tiny", metavar="OUT_ROOT", help="convert the tiny check's sets there first (implies "
                        "--direct)")
    parser.add_argument("--vitb32", metavar="OUT_ROOT", help="convert ViT-B-32 (random init) sets there first")
    parser.add_argument("--cpus", help="qemu CPU models, comma-separated (default: ptl "
                        f"{','.join(FORMATS['ptl'].cpus)}; pte {','.join(FORMATS['pte'].cpus)})")
    parser.add_argument("--mobileclip", metavar="OUT_ROOT", help="convert MobileCLIP2-S0 (random init) sets there first")
    parser.add_argument("--rows", type=int, default=4, help="input rows per role (default: %(default)s)")
    parser.add_argument("--direct", action="store_true", help="also gate arm64 vs x86 directly (tiny model)")
    parser.add_argument("--factor", type=float, default=FACTOR, help="error factor (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel worker processes (default: %(default)s)")
    parser.add_argument("--python21", help="x86 Python with torch 2.1.0 (default: CLIPKIT_RUNTIME21_PYTHON)")
    parser.add_argument("--json", help="write the report as JSON here")
    parser.add_argument("--workdir", help="keep the inputs and every run's outputs (.npz) here")
    args = parser.parse_args(argv)
    return run_command(lambda: _run(parser, args))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    sets: dict[str, Path] = {}
    if args.tiny:
        set_openmp_default()
        sets = tiny_sets(Path(args.tiny), args.format)
        args.direct = True
    if args.vitb32:
        set_openmp_default()
        sets.update({f"vitb32-{k}": v for k, v in vitb32_sets(Path(args.vitb32)).items()})
    if args.mobileclip:
        set_openmp_default()
        sets.update({f"mobileclip-{k}": v for k, v in mobileclip_sets(Path(args.mobileclip)).items()})
    for item in args.dirs:
        name, _, path = item.rpartition("=")
        name = name or Path(path).name
        sets[name if name not in sets else path] = Path(path)   # two ".../out": the second by its path
    if not sets:
        parser.error("give --tiny OUT_ROOT or artifact directories")
    cpus = split_cpus(args.cpus) if args.cpus else FORMATS[args.format].cpus
    report = run_parity(sets, fmt=args.format, cpus=cpus, rows=args.rows, direct=args.direct,
                        python21=args.python21, jobs=args.jobs, factor=args.factor,
                        workdir=Path(args.workdir) if args.workdir else None,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print(report.table)
    print(f"\n{'PASS' if report.ok else 'FAIL'}; seconds: {report.seconds}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1, default=float))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
