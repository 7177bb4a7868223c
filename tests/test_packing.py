"""Packing int8 weights on the first call (x86): same answers, one copy of each weight, a file that
still holds the unpacked weights only."""
import copy

import pytest
import torch

from convert.export import load_lite
from convert.packing import FirstCallPackedLinear, defer_packing


def _dynamic_int8(engine, per_channel=True):
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    torch.backends.quantized.engine = engine
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(48, 96), torch.nn.GELU(), torch.nn.Linear(96, 32, bias=False))
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    return quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8).eval()


@pytest.mark.parametrize("per_channel", [True, False])
def test_first_call_packing_equals_torch_ao_and_drops_the_unpacked_weight(per_channel):
    model = _dynamic_int8("fbgemm", per_channel)
    x = torch.randn(3, 7, 48)
    with torch.no_grad():
        ref = model(x)
    lazy = copy.deepcopy(model)
    assert defer_packing(lazy) == 2
    first = lazy[0]
    assert isinstance(first, FirstCallPackedLinear) and first.packed is None and first.weight.numel() == 48 * 96
    with torch.no_grad():
        out1, out2 = lazy(x), lazy(x)
    assert torch.equal(out1, ref) and torch.equal(out2, ref)
    assert first.packed is not None and first.weight.numel() == 0


def test_scripted_lite_file_holds_unpacked_weights_and_packs_on_first_call(tmp_path):
    model = _dynamic_int8("fbgemm")
    x = torch.randn(2, 48)
    with torch.no_grad():
        ref = model(x)
    defer_packing(model)
    path = tmp_path / "m.ptl"
    torch.jit.script(model)._save_for_lite_interpreter(str(path))
    loaded = load_lite(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
        assert torch.equal(loaded(x), ref)
    # Saved after its first call, a module holds the packed weights instead and still loads.
    scripted = torch.jit.script(model)
    scripted(x)
    again = tmp_path / "again.ptl"
    scripted._save_for_lite_interpreter(str(again))
    with torch.no_grad():
        assert torch.equal(load_lite(again)(x), ref)


def test_first_call_packing_is_refused_for_android():
    from convert import build_config
    from convert.errors import ConfigError

    with pytest.raises(ConfigError, match="pack='first-call' needs target x86"):
        build_config(target="android", pack="first-call")
    with pytest.raises(ConfigError, match="pack='lazy' is not valid; choose one of: load, first-call"):
        build_config(target="x86", pack="lazy")
    assert build_config("x86").pack == "first-call" == build_config(target="x86").pack
    assert build_config().pack == "load"


def test_cli_rejects_first_call_packing_for_android(run_cli):
    code, out, err = run_cli("--pack", "first-call", "--target", "android")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "needs target x86" in err


def test_x86_conversion_with_first_call_packing(convert_tiny):
    eager = convert_tiny(target="x86", pack="load")
    lazy = convert_tiny(target="x86")
    assert lazy.manifest["config"]["pack"] == "first-call"
    torch.backends.quantized.engine = "fbgemm"
    x = torch.randn(2, 3, 64, 64)
    for role in ("image_encoder", "text_encoder"):
        # Same int8 weights, same kernels: the same figures, and a file of about the same size.
        assert lazy.manifest["fidelity"][role] == eager.manifest["fidelity"][role]
        a, b = (r.out_dir / f"{role}.ptl" for r in (eager, lazy))
        assert abs(a.stat().st_size - b.stat().st_size) < 0.02 * a.stat().st_size
    with torch.no_grad():
        assert torch.equal(load_lite(lazy.out_dir / "image_encoder.ptl")(x),
                           load_lite(eager.out_dir / "image_encoder.ptl")(x))
