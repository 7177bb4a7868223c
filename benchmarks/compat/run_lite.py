"""Run every ``.ptl`` of an artifact directory in *this* interpreter's lite runtime.

    OLD_PYTHON benchmarks/compat/run_lite.py ARTIFACT_DIR INPUTS.npz OUTPUTS.npz

Depends on torch and numpy only (no kit code), so it runs under an old torch — torch 2.1.0 is the
version of ``org.pytorch:pytorch_android_lite:2.1.0``, the last Android runtime release — and shows
that the artifacts load (bytecode version, operators) and answer the same there.
"""
import json
import sys

import numpy as np
import torch
from torch.jit.mobile import _get_model_bytecode_version, _load_for_lite_interpreter


def main(directory: str, inputs_path: str, outputs_path: str) -> int:
    manifest = json.load(open(f"{directory}/manifest.json"))
    torch.backends.quantized.engine = manifest["engine"]
    inputs = np.load(inputs_path)
    outputs = {}
    for entry in manifest["files"]:
        if entry["format"] != "lite":
            continue
        path = f"{directory}/{entry['file']}"
        module = _load_for_lite_interpreter(path)
        with torch.no_grad():
            outputs[entry["role"]] = module(torch.from_numpy(inputs[entry["role"]])).numpy()
        outputs[entry["role"] + ".bytecode"] = np.array(_get_model_bytecode_version(path))
    np.savez(outputs_path, torch_version=np.array(torch.__version__), **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
