"""NF4 with double quantization (intcore.nn.nf4): known answers, error bounds, layout, bitsandbytes parity."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from intcore.nn import nf4
from intcore.nn.nf4 import NF4Linear

V = nf4.NF4_VALUES


def test_nf4_values_are_the_spec_table():
    assert V.tolist() == pytest.approx([
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0],
        abs=0, rel=1e-7)
    assert torch.equal(nf4.NF4_BOUNDS, (V[:-1] + V[1:]) / 2)


# (value in a block whose absmax is 2, expected code): worked out by hand from the table.
# value / 2 is compared with the midpoints of neighbouring NF4 values; a midpoint goes down.
KNOWN_CODES = [
    (2.0, 15), (-2.0, 0), (0.0, 7),
    (0.08, 8),                    # 0.04 > (0 + 0.0796) / 2 = 0.0398
    (0.078, 7),                   # 0.039 < 0.0398
    (1.0, 12),                    # 0.5 < (0.4407 + 0.5626) / 2 = 0.5017
    (1.01, 13),                   # 0.505 > 0.5017
    (-0.5, 4),                    # -0.25 < (-0.2844 - 0.1848) / 2 = -0.2346
    (-0.46, 5),                   # -0.23 > -0.2346
    (1.7, 14),                    # 0.85 < (0.7230 + 1) / 2 = 0.8615
    (1.73, 15),                   # 0.865 > 0.8615
    (-1.2, 2),                    # -0.6 > (-0.6962 - 0.5251) / 2 = -0.6106
    (-1.24, 1),                   # -0.62 < -0.6106
    (2 * float(nf4.NF4_BOUNDS[9]), 9),   # exactly on the midpoint of codes 9 and 10: the lower one
]


def test_nf4_codes_known_answers_and_nibble_order():
    block = torch.zeros(64)
    for i, (value, _) in enumerate(KNOWN_CODES):
        block[i] = value
    second = torch.linspace(-3, 3, 64)  # a second block: absmax 3, its own scale
    packed, absmax = nf4.quantize_nf4(torch.cat([block, second]))
    assert absmax.tolist() == [2.0, 3.0]
    codes = nf4.unpack_nibbles(packed, 128)
    for i, (value, code) in enumerate(KNOWN_CODES):
        assert codes[i] == code, (value, code, int(codes[i]))
    assert codes[0] == 15 and codes[63] == 7 and codes[64] == 0 and codes[127] == 15
    # bitsandbytes' layout: the even-indexed weight in the high nibble.
    assert packed[0] == (15 << 4) | 0 and packed[1] == (7 << 4) | 8
    deq = nf4.dequantize_nf4(packed, absmax, 128)
    assert torch.equal(deq[:64], V[codes[:64].long()] * 2.0) and torch.equal(deq[64:], V[codes[64:].long()] * 3.0)


@pytest.mark.parametrize("shape", [(64, 64), (3, 100), (5, 7)])
def test_nf4_round_trip_error_is_within_half_a_gap(shape):
    w = torch.randn(shape) * 0.05
    packed, absmax = nf4.quantize_nf4(w)
    assert packed.dtype == torch.uint8 and packed.numel() == (w.numel() + 1) // 2
    err = (nf4.dequantize_nf4(packed, absmax, w.numel()) - w.reshape(-1)).abs()
    half_gap = ((V[1:] - V[:-1]).max() / 2).item()
    per_weight_absmax = absmax.repeat_interleave(64)[: w.numel()]
    assert (err <= half_gap * per_weight_absmax * (1 + 1e-6)).all()


def test_zero_block_gets_the_zero_code():
    packed, absmax = nf4.quantize_nf4(torch.zeros(64))
    assert absmax.item() == 0 and (nf4.unpack_nibbles(packed, 64) == 7).all()


def test_dynamic_map_from_its_definition():
    m = nf4.dynamic_map()
    assert m.dtype == torch.float32 and m.numel() == 256 and torch.equal(m, m.sort().values)
    assert len(set(m.tolist())) == 256 and m[-1] == 1.0 and (m == 0).sum() == 1
    assert torch.equal(m[:127], -m[128:255].flip(0))  # symmetric, but for 1.0
    positive = m[128:255]
    counts = [int(((positive >= 10.0 ** e * 0.1) & (positive < 10.0 ** e)).sum()) for e in range(-6, 1)]
    assert counts == [1, 2, 4, 8, 16, 32, 64]
    assert positive[0].item() == pytest.approx(0.55e-6, rel=1e-6)  # midpoint of [0.1, 1] times 1e-6
    assert positive[-1].item() == pytest.approx(0.99296875, rel=1e-7)  # last of 64 midpoints in [0.1, 1]


def test_double_quantization_round_trip_bound():
    absmax = torch.rand(1000) * 0.3 + 0.01
    codes, scale, offset = nf4.double_quantize(absmax)
    assert codes.dtype == torch.uint8 and scale.shape == (4,) and offset.shape == (1,)
    assert offset.item() == pytest.approx(absmax.mean().item())
    back = nf4.double_dequantize(codes, scale, offset)
    m = nf4.dynamic_map()
    max_gap = (m[1:] - m[:-1]).max().item()
    bound = 0.5 * max_gap * scale.repeat_interleave(256)[:1000] * (1 + 1e-5) + 1e-7
    assert ((back - absmax).abs() <= bound).all()


def _linear(out_features=48, in_features=64):
    torch.manual_seed(1)
    return nn.Linear(in_features, out_features)


def test_layer_forward_backward_and_state_dict_round_trip(tmp_path):
    linear = _linear()
    layer = NF4Linear.from_linear(linear)
    w = layer.dequantize()
    x = torch.randn(2, 5, 64, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, nn.functional.linear(x.detach(), w, linear.bias.detach()))
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.allclose(x.grad, g @ w, rtol=1e-6, atol=1e-6)
    assert not any(p.requires_grad for p in layer.parameters())
    save_file(layer.state_dict(), tmp_path / "nf4.safetensors")
    fresh = NF4Linear(64, 48)
    fresh.load_state_dict(load_file(tmp_path / "nf4.safetensors"))
    assert torch.equal(fresh(x.detach()), y.detach())
    assert layer.storage_bytes() <= 0.16 * 4 * 64 * 48


@pytest.mark.parametrize("call, message", [
    (lambda: NF4Linear.from_linear(nn.Conv1d(2, 2, 1)), "linear must be an nn.Linear"),
    (lambda: nf4.quantize_nf4(torch.tensor([1.0, float("nan")])), "w holds NaN or Inf"),
    (lambda: nf4.quantize_nf4(torch.ones(4, dtype=torch.int32)), "w must be a floating-point tensor"),
    (lambda: NF4Linear(8, 4)(torch.randn(3, 5)), "NF4Linear: x has 5 features"),
])
def test_bad_input(call, message):
    with pytest.raises((TypeError, ValueError), match=message) as e:
        call()
    assert "\n" not in str(e.value)


def _bnb_reference(w: torch.Tensor):
    """bitsandbytes' NF4 + double quantization of w: packed codes, 8-bit absmax codes and their
    scales, dequantized weight. The 8-bit step runs bitsandbytes' reference (pure torch) kernel:
    its native CPU kernel (0.50) looks values up in a 65,536-entry table instead of comparing with
    the midpoints, which moves about 0.2% of MiniLM's absmax codes by one step."""
    import bitsandbytes.functional as F  # a test dependency (pyproject [test]): checked on every run
    packed, state = F.quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
    offset = state.absmax.mean()
    reference_kernel = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    codes8, scale8 = torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(
        reference_kernel, state.absmax - offset, F.create_dynamic_map(), 256)
    state.absmax = F.dequantize_blockwise(codes8, absmax=scale8, code=F.create_dynamic_map(), blocksize=256) + offset
    return packed.reshape(-1), codes8, scale8, F.dequantize_4bit(packed, state)


@pytest.mark.parametrize("shape, scale", [((384, 384), 0.04), ((96, 1536), 1.0), ((64, 64), 3e-3), ((5, 64 * 3), 0.2)])
def test_bit_identical_to_bitsandbytes(shape, scale):
    import bitsandbytes.functional as F  # a test dependency (pyproject [test]): checked on every run
    assert torch.equal(nf4.dynamic_map(), F.create_dynamic_map())
    w = torch.randn(shape) * scale
    w[0, :64] = torch.round(w[0, :64] * 4) / 4  # values on NF4 midpoints and ties
    layer = NF4Linear.from_linear(_with_weight(w))
    packed, codes8, scale8, weight = _bnb_reference(w)
    assert torch.equal(layer.weight_codes, packed)
    assert torch.equal(layer.absmax_codes, codes8) and torch.equal(layer.absmax_scale, scale8)
    assert torch.equal(layer.dequantize(), weight)


def _with_weight(w: torch.Tensor) -> nn.Linear:
    linear = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        linear.weight.copy_(w)
    return linear
