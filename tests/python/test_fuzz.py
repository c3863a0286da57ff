"""A seeded fuzz of malformed and edge-case calls, as a careless or hostile user would make them.

Three families, each in its own subprocess so that a crash fails its test instead of killing
the test run, run side by side:

- public: the functions of ``intcore`` (and the backward of those that have one);
- ops: ``torch.ops.intcore.*`` called directly, each call run by the native kernel and by the
  portable kernel;
- engine: ``intcore._C``, with outputs placed inside guard bytes.

Each call starts from valid arguments and replaces some of them with bad or extreme values
(None, wrong types and dtypes, wrong ranks and shapes, empty and huge sizes, non-contiguous and
expanded views, NaN, Inf, values near float32's limit, negative and huge integers, outputs that
alias inputs). What counts as a problem:

- a crash (the subprocess dies) or a hang (one call over PER_CALL_SECONDS, or the family over
  its time limit);
- an error other than TypeError/ValueError, or one whose message does not start with the name
  of the function called (``int8_linear: ...``; for ops and engine functions, with some
  function's name); torch's own refusal of a raw op argument of the wrong Python type
  (RuntimeError "intcore::<op>() Expected a value of type ...") is accepted;
- a wrong result: a public function's result of the wrong shape or dtype, not finite for finite
  inputs whose true result fits, or off its oracle (exact products, quantization within one
  step, a linear layer with in_features 0 giving its bias, the Hadamard transform keeping norms);
  native and portable kernels disagreeing (different exception types, or different bits); an
  engine function writing outside its output.

``INTCORE_FUZZ_SEED`` and ``INTCORE_FUZZ_SECONDS`` (per family) run other or longer fuzzes;
``python tests/python/test_fuzz.py public 7 60`` runs one family by hand.
"""

from __future__ import annotations

import faulthandler
import json
import math
import os
import random
import re
import subprocess
import sys
import time

FAMILIES = ("public", "ops", "engine")
SEED = int(os.environ.get("INTCORE_FUZZ_SEED", "0"))
SECONDS = float(os.environ.get("INTCORE_FUZZ_SECONDS", "12"))
PER_CALL_SECONDS = 20
MAX_PROBLEMS = 15


# ---- the pytest side -------------------------------------------------------------------------

if __name__ != "__main__":
    import pytest

    @pytest.fixture(scope="module")
    def fuzz_runs(tmp_path_factory):
        """All three families started at once (each is mostly single-threaded). Their output goes
        to files, not pipes: a worker writes a line per call, and a pipe nobody reads until its
        family's test comes up would fill and stall it."""
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
        folder = tmp_path_factory.mktemp("fuzz")
        procs = {}
        for family in FAMILIES:
            out, err = folder / f"{family}.out", folder / f"{family}.err"
            with open(out, "w") as stdout, open(err, "w") as stderr:
                proc = subprocess.Popen([sys.executable, __file__, family, str(SEED), str(SECONDS)], env=env,
                                        stdout=stdout, stderr=stderr, text=True)
            procs[family] = (proc, out, err)
        yield procs
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.kill()

    @pytest.mark.parametrize("family", FAMILIES)
    def test_fuzz(fuzz_runs, family):
        proc, out_file, err_file = fuzz_runs[family]
        try:
            proc.wait(timeout=SECONDS * 4 + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{family} fuzz hung; last call: {_last_call(err_file.read_text())}")
        out, err = out_file.read_text(), err_file.read_text()
        assert proc.returncode == 0, (
            f"{family} fuzz crashed (exit {proc.returncode}) during: {_last_call(err)}\n{err[-3000:]}")
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["calls"] >= 200, summary
        assert not summary["problems"], f"{family} fuzz (seed {SEED}): " + "\n".join(summary["problems"])


def _last_call(err: str) -> str:
    calls = [line[3:] for line in err.splitlines() if line.startswith("@@ ")]
    return calls[-1] if calls else "(before the first call)"


# ---- the worker ------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
NAMED = re.compile(r"^[A-Za-z_][\w.]*(?: backward)?: \S")
PYBIND_REFUSAL = re.compile(r"^\w+\(\): incompatible function arguments")


def describe(v) -> str:
    import torch

    if isinstance(v, torch.Tensor):
        extra = "" if v.layout != torch.strided or v.is_contiguous() else ",strided"
        extra += "" if v.layout == torch.strided else ",sparse"
        extra += "" if v.device.type == "cpu" else f",{v.device.type}"
        extra += ",grad" if v.requires_grad else ""
        return f"T{list(v.shape)}{str(v.dtype)[6:]}{extra}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(describe(x) for x in v) + "]"
    return type(v).__name__ if type(v).__module__ == "numpy" else repr(v)[:40]


class Fuzz:
    def __init__(self, seed: int):
        import numpy as np
        import torch

        self.torch, self.np = torch, np
        self.rng = random.Random(seed)
        torch.manual_seed(seed)
        self.problems: list[str] = []
        self.calls = 0

    # -- values --------------------------------------------------------------------------------

    def pick(self, *options):
        return self.rng.choice(options)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def floats(self, shape, dtype=None, special=0.15):
        """A float tensor: mostly ordinary values, sometimes zeros, NaN/Inf, huge or tiny
        values, another float dtype, or a transposed or expanded view."""
        torch = self.torch
        dtype = dtype or (torch.float32 if self.chance(0.7) else self.pick(torch.float64, torch.bfloat16, torch.float16))
        t = torch.randn(*shape, dtype=torch.float64) * self.pick(1.0, 1e-3, 30.0)
        if t.numel() and self.chance(special):
            kind = self.pick("zeros", "nan", "inf", "big", "tiny", "huge64")
            flat = t.view(-1)
            where = self.rng.randrange(t.numel())
            if kind == "zeros":
                t.zero_()
            elif kind == "nan":
                flat[where] = NAN
            elif kind == "inf":
                flat[where] = -INF
            elif kind == "big":
                t *= 3e36 / max(float(t.abs().max()), 1e-30)
                flat[where] = self.pick(3e36, 3.3e38, -2e38)
            elif kind == "tiny":
                t *= 1e-40
            else:
                flat[where] = 1e300
        t = t.to(dtype)
        if t.dim() == 2 and self.chance(0.1):
            t = t.T.contiguous().T
        return t

    def bad(self, like=None):
        """A value that should be refused (or is an edge case) where a tensor is expected."""
        torch, np = self.torch, self.np
        shape = list(like.shape) if isinstance(like, torch.Tensor) and like.numel() < 10**6 else [3, 4]
        options = [
            lambda: None, lambda: 1.5, lambda: "x", lambda: [[1.0, 2.0]], lambda: np.ones(shape, dtype=np.float32),
            lambda: torch.tensor(2.0), lambda: torch.ones(5), lambda: torch.ones(2, 3, 4),
            lambda: torch.ones(shape, dtype=torch.int64), lambda: torch.ones(shape, dtype=torch.bool),
            lambda: torch.ones(shape, dtype=torch.int8), lambda: torch.ones(shape, dtype=torch.uint8),
            lambda: torch.ones(shape, dtype=torch.int16), lambda: torch.ones(shape, dtype=torch.int32),
            lambda: torch.ones(shape, dtype=torch.complex64), lambda: torch.empty(0, 4), lambda: torch.empty(4, 0),
            lambda: torch.randn(shape[::-1]).T if len(shape) == 2 else torch.randn(shape),
            lambda: torch.zeros(1, 1).expand(64, 4096), lambda: torch.full(shape, NAN), lambda: torch.full(shape, INF),
            lambda: torch.full(shape, 3.3e38), lambda: torch.randn(shape, requires_grad=True),
            lambda: torch.randn(shape).to_sparse() if len(shape) == 2 else None,
            lambda: torch.randn(shape, device="meta"), lambda: -1, lambda: 2**40, lambda: True,
        ]
        if isinstance(like, torch.Tensor) and 0 < like.numel() < 10**6 and like.dim():
            options += [lambda: like[..., :-1], lambda: like.reshape(-1), lambda: like.to(torch.float64),
                        lambda: like.unsqueeze(0)]
        return self.rng.choice(options)()

    def bad_int(self):
        return self.pick(-1, -7, 0, 1, 3, 2**31, 2**40, 2**63, None, 2.0, "8", True, NAN)

    # -- running and judging -------------------------------------------------------------------

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS and text not in self.problems:
            self.problems.append(text)

    def announce(self, name: str, args: dict) -> str:
        self.calls += 1
        call = f"{name}({', '.join(f'{k}={describe(v)}' for k, v in args.items())})"
        print("@@ " + call, file=sys.stderr, flush=True)
        faulthandler.dump_traceback_later(PER_CALL_SECONDS, exit=True)
        return call

    def judge_error(self, call: str, error: BaseException, prefix: str | None) -> None:
        """A refusal must be a TypeError/ValueError naming the function (prefix, or any name)."""
        message = str(error)
        if isinstance(error, RuntimeError) and "Expected a value of type" in message and "intcore::" in message:
            return  # torch refusing a raw op argument of the wrong Python type, naming op and argument
        if isinstance(error, TypeError) and PYBIND_REFUSAL.match(message):
            return  # pybind11 refusing an intcore._C argument of the wrong Python type, naming the function
        if not isinstance(error, (TypeError, ValueError)):
            self.problem(f"{call} raised {type(error).__name__}: {message[:160]}")
        elif prefix is not None and not message.startswith(prefix + ": "):
            self.problem(f"{call}: error does not name {prefix}: {type(error).__name__}: {message[:160]}")
        elif not NAMED.match(message):
            self.problem(f"{call}: unnamed error {type(error).__name__}: {message[:160]}")

    def run(self, name: str, fn, args: dict, prefix: str | None):
        call = self.announce(name, args)
        try:
            return call, fn(**args), None
        except Exception as e:  # noqa: BLE001 (judged below)
            self.judge_error(call, e, prefix)
            return call, None, e

    def mutate(self, args: dict, count: int | None = None, bad=None) -> dict:
        """args with `count` (0 to 2) of them replaced by bad values."""
        count = self.pick(0, 1, 1, 1, 2) if count is None else count
        args = dict(args)
        for key in self.rng.sample(sorted(args), min(count, len(args))):
            args[key] = (bad or self.bad_value)(key, args[key])
        return args

    def bad_value(self, key, value):
        torch = self.torch
        if isinstance(value, torch.Tensor) or value is None:
            return self.bad(value)
        if isinstance(value, bool):
            return self.pick(None, 2, "yes")
        if isinstance(value, int):
            return self.bad_int()
        if isinstance(value, float):
            return self.pick(NAN, -1.0, INF, 0.0, 2.0, None, "0.5")
        if isinstance(value, str):
            return self.pick("up", "", None, 3, "Nearest")
        return self.bad(None)

    # -- helpers for oracles -------------------------------------------------------------------

    def finite(self, *tensors) -> bool:
        torch = self.torch
        return all(t is None or not t.is_floating_point() or bool(torch.isfinite(t).all()) for t in tensors)

    def moderate(self, *tensors, limit=1e4) -> bool:
        """Finite, and small enough that products and sums stay far from float32's limit."""
        return all(t is None or (self.finite(t) and (t.numel() == 0 or float(t.double().abs().max()) < limit))
                   for t in tensors)


# ---- the public functions --------------------------------------------------------------------


def fuzz_public(f: Fuzz, deadline: float) -> None:
    import intcore
    import torch

    sizes = (0, 1, 2, 3, 5, 8)
    ks = (0, 1, 2, 4, 8, 16, 32, 64)

    def lead():
        return f.pick((), (f.pick(*sizes),), (f.pick(*sizes), f.pick(1, 2)), (2, 1, f.pick(*sizes)))

    def config():
        if f.chance(0.1):
            return f.pick(None, "int8", intcore.Int4Config(), 8)
        return intcore.FixedPointConfig(weight_bits=f.rng.randint(2, 16), activation_bits=f.rng.randint(2, 16),
                                        grad_bits=f.rng.randint(2, 16), rounding=f.pick("nearest", "stochastic"),
                                        granularity=f.pick("per_tensor", "per_row"),
                                        rsqrt=f.pick("integer", "float"))

    def linear_args(weight_name="w"):
        m, k, n = lead(), f.pick(*ks), f.pick(1, 2, 3, 5)
        return {"x": f.floats((*m, k)), weight_name: f.floats((n, k)),
                "bias": f.floats((n,)) if f.chance(0.5) else None}

    def int_matrix(rows, k, dtype):
        lo, hi = {torch.int8: (-128, 128), torch.int16: (-32768, 32768), torch.uint8: (0, 256)}[dtype]
        return torch.randint(lo, hi, (rows, k), dtype=dtype)

    def builders():
        m, n, k = f.pick(*sizes), f.pick(*sizes), f.pick(*ks)
        per_row = f.chance(0.5)
        yield "quantize_fixed_point", {"x": f.floats((*lead(), k)), "bits": f.rng.randint(2, 16),
                                       "rounding": f.pick("nearest", "stochastic"), "per_row": per_row,
                                       "seed": f.pick(None, 0, 12345)}
        fp = intcore.quantize_fixed_point(torch.randn(m, k), f.rng.randint(2, 16), per_row=per_row)
        yield "dequantize_fixed_point", {"mantissa": fp.mantissa, "exponent": fp.exponent}
        yield "quantize_absmax", {"x": f.floats((m, k)), "bits": f.pick(4, 8), "rounding": f.pick("nearest", "stochastic"),
                                  "per_row": per_row, "seed": f.pick(None, 7)}
        bits = f.pick(4, 8)
        q, scale = intcore.quantize_absmax(torch.randn(m, k), bits, per_row=per_row)
        yield "dequantize_absmax", {"q": q, "scale": scale.requires_grad_(f.chance(0.2)), "bits": bits,
                                    "cols": f.pick(None, k, k + 1, -1)}
        yield "int8_mm", {"a": int_matrix(m, k, torch.int8), "b": int_matrix(n, k, torch.int8)}
        yield "int16_mm", {"a": int_matrix(m, k, f.pick(torch.int8, torch.int16)),
                           "b": int_matrix(n, k, f.pick(torch.int8, torch.int16))}
        yield "int4_mm", {"a": int_matrix(m, (k + 1) // 2, torch.uint8), "b": int_matrix(n, (k + 1) // 2, torch.uint8),
                          "k": f.pick(k, k, -1, k + 2)}
        yield "int8_linear", linear_args()
        args = linear_args()
        args.update(recipe=f.pick("hq-lss", "hq-lss", "absmax"), block_size=f.pick(1, 2, 8, 32, 3),
                    sampling=f.chance(0.5), budget=f.pick(0.5, 1.0, 0.1))
        if f.chance(0.25):
            args.update(x_step=torch.rand(1) + 0.01, w_step=torch.rand(1) + 0.01)
        yield "int4_linear", args
        yield "fixed_point_linear", {**linear_args("weight"), "config": config()}
        x = f.floats((*lead(), f.pick(*ks)))
        affine = f.chance(0.6)
        yield "fixed_point_layer_norm", {"x": x, "weight": f.floats(x.shape[-1:]) if affine else None,
                                         "bias": f.floats(x.shape[-1:]) if affine else None,
                                         "eps": f.pick(1e-5, 0.0, 1.0), "config": config()}
        x = f.floats((*lead(), f.pick(*ks)))
        yield "fixed_point_rms_norm", {"x": x, "weight": f.pick(None, f.floats(x.shape[-1:]), f.floats((3,))),
                                       "eps": f.pick(1e-6, 0.0, 1.0), "weight_offset": f.pick(0.0, 1.0),
                                       "config": config()}
        vocab = f.pick(0, 1, 5, 9)
        yield "fixed_point_embedding", {"ids": torch.randint(0, max(vocab, 1), lead()),
                                        "weight": f.floats((vocab, f.pick(1, 3, 8))),
                                        "padding_idx": f.pick(None, 0, -1, vocab, vocab - 1, -vocab - 1),
                                        "config": config()}
        block = f.pick(1, 2, 8, 64, 128)
        yield "hadamard", {"x": f.floats((*lead(), block * f.pick(0, 1, 2))), "block_size": f.pick(block, block, 3)}
        yield "search_block_size", {"x": f.floats((m, k)), "w": f.floats((n, k))}

    def check(name, args, result, call):
        x = args.get("x")
        if name == "quantize_fixed_point" and f.finite(x) and x.dtype != torch.float64:
            mantissa, exponent = result
            e = exponent.double() if exponent.dim() == 0 else exponent.double().unsqueeze(-1)
            step = torch.exp2(e)
            error = (x.float().double() - mantissa.double() * step).abs()
            if mantissa.shape != x.shape or bool((error > step * (1 + 1e-9)).any()):
                f.problem(f"{call}: values not within one step of x")
        elif name == "quantize_absmax" and f.finite(x) and x.dtype != torch.float64:
            q, scale = result
            back = intcore.dequantize_absmax(q, scale, args["bits"], x.shape[1])
            limit = scale.reshape(-1, 1).double() * (1 + 1e-6) + 1e-30
            if bool(((back.double() - x.float().double()).abs() > limit).any()):
                f.problem(f"{call}: dequantized codes more than one step from x")
        elif name in ("int8_mm", "int16_mm", "int4_mm"):
            a, b = args["a"], args["b"]
            if name == "int4_mm":
                from intcore.backends.portable.quantize import unpack_int4

                a, b = unpack_int4(a, args["k"]), unpack_int4(b, args["k"])
            expected = a.long() @ b.long().T
            if not torch.equal(result.long(), expected):
                f.problem(f"{call}: not the exact product")
        elif name in ("int8_linear", "int4_linear", "fixed_point_linear"):
            w, bias = args.get("w", args.get("weight")), args["bias"]
            if result.shape != (*x.shape[:-1], w.shape[0]) or result.dtype != x.dtype:
                f.problem(f"{call}: result {describe(result)}")
            elif x.shape[-1] == 0:
                # the bias is added in float32 (the layers' epilogue), then converted to x's dtype
                expected = torch.zeros_like(result) if bias is None else bias.float().to(result.dtype).expand_as(result)
                if not torch.equal(result, expected):
                    f.problem(f"{call}: in_features 0 must give the bias (or zeros)")
            elif f.moderate(x, w, bias, limit=1e3) and not f.finite(result):
                f.problem(f"{call}: not finite for moderate inputs")
        elif name in ("fixed_point_layer_norm", "fixed_point_rms_norm"):
            if result.shape != x.shape or (f.moderate(x, args["weight"], args.get("bias"), limit=1e3) and not f.finite(result)):
                f.problem(f"{call}: result {describe(result)} (finite: {f.finite(result)})")
        elif name == "fixed_point_embedding":
            if result.shape != (*args["ids"].shape, args["weight"].shape[1]) or not f.finite(result):
                f.problem(f"{call}: result {describe(result)}")
        elif name == "hadamard":
            if result.shape != x.shape:
                f.problem(f"{call}: result shape {list(result.shape)}")
            elif x.dtype in (torch.float32, torch.float64) and x.numel():
                top = float(x.double().abs().max())
                fits = top * math.sqrt(args["block_size"]) < 3.3e38
                if fits and not f.finite(result):
                    f.problem(f"{call}: Inf for finite input whose transform fits float32 (max |x| {top:.3g})")
                elif 1e-30 < top < 1e30 and x.dtype == torch.float32:
                    norms = (x.double().norm(), result.double().norm())
                    if abs(float(norms[0] - norms[1])) > 1e-4 * float(norms[0]):
                        f.problem(f"{call}: the transform changed the norm {float(norms[0])} -> {float(norms[1])}")
        elif name == "search_block_size":
            k = args["w"].shape[1]
            if result not in intcore.int4_training.BLOCK_SEARCH or (k and k % result):
                f.problem(f"{call}: block size {result}")

    def backward(name, args, result, call):
        """The backward of a successful forward, with a gradient that may hold NaN or huge values."""
        leaves = [v for v in args.values() if isinstance(v, torch.Tensor) and v.is_floating_point()
                  and v.dtype in (torch.float32, torch.float64)]
        if not leaves or result.numel() == 0:
            return
        leaves = [v.detach().requires_grad_() for v in leaves]
        regrad = dict(args)
        i = 0
        for key, v in args.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype in (torch.float32, torch.float64):
                regrad[key] = leaves[i]
                i += 1
        grad = f.floats(tuple(result.shape), dtype=result.dtype, special=0.3)
        y = getattr(intcore, name)(**regrad)
        if not y.requires_grad:
            return
        bcall = f.announce(name + " backward", {"grad": grad})
        try:
            y.backward(grad)
        except Exception as e:  # noqa: BLE001
            f.judge_error(bcall, e, name + " backward" if "NaN" in str(e) or "Inf" in str(e) else None)

    while time.monotonic() < deadline:
        for name, valid in builders():
            args = f.mutate(valid)
            call, result, error = f.run(name, getattr(intcore, name), args, name)
            on_meta = any(isinstance(v, torch.Tensor) and v.device.type == "meta" for v in args.values())
            if error is None and result is not None and not on_meta:
                try:
                    check(name, args, result, call)
                except Exception as e:  # noqa: BLE001 (an oracle tripping is a finding too)
                    f.problem(f"{call}: oracle failed: {type(e).__name__}: {e}")
                if name in ("int8_linear", "int4_linear", "fixed_point_linear", "fixed_point_layer_norm",
                            "fixed_point_rms_norm", "hadamard") and f.chance(0.3):
                    backward(name, args, result, call)
            if time.monotonic() > deadline:
                break


# ---- torch.ops.intcore: native against portable ------------------------------------------------


def fuzz_ops(f: Fuzz, deadline: float) -> None:
    import intcore
    import torch

    ops = torch.ops.intcore
    seed = lambda: torch.tensor(f.rng.randrange(2**62))  # noqa: E731

    def builders():
        m, n, k = f.pick(0, 1, 3, 5), f.pick(1, 2, 4), f.pick(0, 1, 2, 8, 16)
        bits = f.rng.randint(2, 16)
        x, w, g = f.floats((m, k)), f.floats((n, k)), f.floats((m, n))
        per_row = f.chance(0.5)
        rounding = f.pick("nearest", "stochastic")
        yield "quantize_fixed_point", (x, bits, rounding, per_row, seed())
        mantissa, exponent = ops.quantize_fixed_point(torch.randn(m, k), bits, "nearest", per_row, seed())
        yield "dequantize_fixed_point", (mantissa, exponent)
        yield "quantize_absmax", (x, f.pick(4, 8), rounding, per_row, seed())
        b4 = f.pick(4, 8)
        q, scale = ops.quantize_absmax(torch.randn(m, k), b4, "nearest", per_row, seed())
        yield "dequantize_absmax", (q, scale, b4, f.pick(k, k, k + 1, -3))
        yield "int8_mm", (torch.randint(-128, 128, (m, k), dtype=torch.int8),
                          torch.randint(-128, 128, (n, k), dtype=torch.int8))
        yield "int16_mm", (torch.randint(-32768, 32768, (m, k), dtype=torch.int16),
                           torch.randint(-128, 128, (n, k), dtype=torch.int8))
        yield "int4_mm", (torch.randint(0, 256, (m, (k + 1) // 2), dtype=torch.uint8),
                          torch.randint(0, 256, (n, (k + 1) // 2), dtype=torch.uint8), f.pick(k, -1, k + 2))
        bias = f.floats((n,)) if f.chance(0.5) else None
        for op in ("int8_linear", "int4_linear"):
            yield op, (x, w, bias)
            yield op + "_grad_input", (g, w, seed())
            yield op + "_grad_weight", (g, x, seed())
        fp_bits = [f.rng.randint(2, 16) for _ in range(3)]
        yield "fixed_point_linear", (x, w, bias, fp_bits, rounding, per_row, seed())
        _, qx, ex, qw, ew = ops.fixed_point_linear(torch.randn(m, k), torch.randn(n, k), None, fp_bits, "nearest",
                                                    per_row, seed())
        yield "fixed_point_linear_backward", (g, qx, ex, qw, ew, fp_bits[2], rounding, per_row,
                                              [f.chance(0.7), f.chance(0.7)], seed())
        affine = f.chance(0.5)
        gamma, beta = (f.floats((k,)), f.floats((k,))) if affine else (None, None)
        yield "fixed_point_layer_norm", (x, gamma, beta, bits, bits, f.pick(1e-5, 0.0), rounding,
                                         f.pick("integer", "float"), per_row, seed())
        saved = ops.fixed_point_layer_norm(torch.randn(m, k), torch.randn(k) if affine else None,
                                           torch.randn(k) if affine else None, bits, bits, 1e-5, "nearest",
                                           "integer", per_row, seed())[1:]
        yield "fixed_point_layer_norm_backward", (f.floats((m, k)), *saved, affine, bits, rounding, seed())
        yield "fixed_point_rms_norm", (x, gamma, bits, bits, f.pick(1e-6, 0.0), rounding, f.pick("integer", "float"),
                                       per_row, seed())
        saved = ops.fixed_point_rms_norm(torch.randn(m, k), torch.randn(k) if affine else None, bits, bits, 1e-6,
                                         "nearest", "integer", per_row, seed())[1:]
        yield "fixed_point_rms_norm_backward", (f.floats((m, k)), *saved, affine, bits, rounding, seed())
        vocab = f.pick(1, 4, 7)
        ids = torch.randint(0, vocab, (m,))
        yield "fixed_point_embedding", (ids, f.floats((vocab, n)), bits, bits, rounding, f.pick(-1, 0, vocab))
        yield "fixed_point_embedding_backward", (f.floats((m, n)), ids, vocab, bits, rounding, f.pick(-1, 0), seed())
        block = f.pick(1, 2, 8)
        yield "hadamard", (f.floats((m, block * f.pick(0, 1, 3))), block)
        kb = block * f.pick(0, 1, 2)
        xb, wb = f.floats((m, kb)), f.floats((n, kb))
        steps = (torch.rand(1) + 0.05, torch.rand(1) + 0.05) if f.chance(0.3) else (None, None)
        per_row = steps[0] is None and f.chance(0.5)
        yield "hq_linear", (xb, wb, bias, block, f.chance(0.5), f.pick(0.5, 1.0), *steps, per_row)
        _, xc, xs, wc, wsc = ops.hq_linear(torch.randn(m, kb), torch.randn(n, kb), None, block, True, 0.5, None, None,
                                           per_row)
        yield "hq_linear_backward", (g, xc, xs, wc, wsc, kb, block, f.chance(0.5), f.pick(0.5, 0.25, 1.0),
                                     [f.chance(0.7), f.chance(0.7)], seed(), per_row)

    def mismatch(a, b) -> str:
        if isinstance(a, (tuple, list)):
            if not isinstance(b, (tuple, list)) or len(a) != len(b):
                return "different output counts"
            return next((f"output {i}: {m}" for i, (x, y) in enumerate(zip(a, b)) if (m := mismatch(x, y))), "")
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{describe(a)} vs {describe(b)}"
        if a.is_floating_point():
            width = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
            a, b = a.contiguous().view(width), b.contiguous().view(width)
        return "" if torch.equal(a, b) else "different values"

    while time.monotonic() < deadline:
        for name, valid in builders():
            positional = dict(enumerate(valid))
            # A vocabulary size is an output's row count: a huge one is a legitimate huge request.
            sizes = {2} if name == "fixed_point_embedding_backward" else set()
            args = f.mutate(positional, bad=lambda key, value: (f.pick(-1, 0, 1, None, "8", 2.0) if key in sizes
                                                                else f.bad_value(key, value)))
            op = getattr(ops, name)
            call, native, error = f.run(name, lambda **a: op(*a.values()), {str(i): v for i, v in args.items()}, None)
            with intcore.portable_kernels():
                _, portable, portable_error = f.run(name + "[portable]", lambda **a: op(*a.values()),
                                                    {str(i): v for i, v in args.items()}, None)
            if (error is None) != (portable_error is None):
                f.problem(f"{call}: native {'ok' if error is None else type(error).__name__} but portable "
                          f"{'ok' if portable_error is None else type(portable_error).__name__}: "
                          f"{error or portable_error}")
            elif error is not None and type(error) is not type(portable_error):
                f.problem(f"{call}: native raised {type(error).__name__} ({error}), portable "
                          f"{type(portable_error).__name__} ({portable_error})")
            elif error is None and not any(isinstance(v, torch.Tensor) and v.device.type == "meta"
                                           for v in args.values()) and (problem := mismatch(native, portable)):
                f.problem(f"{call}: native and portable results differ: {problem}")
            if time.monotonic() > deadline:
                break


# ---- intcore._C: outputs inside guard bytes --------------------------------------------------


def fuzz_engine(f: Fuzz, deadline: float) -> None:
    import torch
    from intcore import _C

    guards = []  # (buffer, pad bytes, output bytes) of this call's outputs

    def out(shape, dtype):
        """An output view placed between guard bytes of a larger buffer."""
        count = math.prod(shape)
        size = torch.empty((), dtype=dtype).element_size()
        pad = 64
        buffer = torch.full((2 * pad + count * size,), 0x5A, dtype=torch.uint8)
        guards.append((buffer, pad, count * size))
        return buffer[pad: pad + count * size].view(dtype).view(shape)

    def builders():
        m, n, k = f.pick(0, 1, 3, 6), f.pick(1, 2, 5), f.pick(0, 1, 2, 8, 16)
        bits = f.rng.randint(2, 16)
        x, w, g = f.floats((m, k)), f.floats((n, k)), f.floats((m, n))
        rounding = f.pick("nearest", "stochastic")
        mdtype = torch.int8 if bits <= 8 else torch.int16
        yield "quantize_fixed_point", dict(x=x, mantissa=out((m, k), mdtype), exponent=out((f.pick(1, m),), torch.int32),
                                           bits=bits, rounding=rounding, seed=f.rng.randrange(2**40), offset=0)
        yield "dequantize_fixed_point", dict(mantissa=torch.randint(-100, 100, (m, k), dtype=torch.int8),
                                             exponent=torch.zeros(1, dtype=torch.int32), out=out((m, k), torch.float32))
        b4 = f.pick(4, 8)
        qshape = (m, k) if b4 == 8 else (m, (k + 1) // 2)
        qdtype = torch.int8 if b4 == 8 else torch.uint8
        yield "quantize_absmax", dict(x=x, q=out(qshape, qdtype), scale=out((f.pick(1, m),), torch.float32), bits=b4,
                                      rounding=rounding, seed=3, offset=0)
        yield "dequantize_absmax", dict(q=torch.zeros(qshape, dtype=qdtype), scale=torch.ones(1), bits=b4,
                                        out=out((m, k), torch.float32))
        yield "pack_int4", dict(values=torch.randint(-8, 8, (m, k), dtype=torch.int8),
                                packed=out((m, (k + 1) // 2), torch.uint8))
        yield "unpack_int4", dict(packed=torch.randint(0, 256, (m, (k + 1) // 2), dtype=torch.uint8),
                                  values=out((m, k), torch.int8))
        a8, b8 = torch.randint(-128, 128, (m, k), dtype=torch.int8), torch.randint(-128, 128, (n, k), dtype=torch.int8)
        yield "gemm_exact", dict(a=a8, b=b8, c=out((m, n), f.pick(torch.int32, torch.int64)), int4_k=None)
        yield "gemm_scaled", dict(a=a8, a_scale=torch.rand(1), b=b8, b_scale=torch.rand(n), bias=f.floats((n,), torch.float32),
                                  out=out((m, n), torch.float32), int4_k=None)
        yield "absmax_linear_forward", dict(x=x, w=w, bias=None, out=out((m, n), torch.float32), bits=b4)
        yield "absmax_linear_grad_input", dict(grad=g, w=w, bits=b4, seed=1, dx=out((m, k), torch.float32))
        yield "absmax_linear_grad_weight", dict(grad=g, x=x, bits=b4, seed=1, dw=out((n, k), torch.float32))
        yield "align_fixed_point", dict(mantissa=torch.randint(-100, 100, (m, k), dtype=torch.int8),
                                        exponent=torch.randint(-20, 20, (m,), dtype=torch.int32),
                                        out=out((m, k), torch.int8), out_exponent=out((1,), torch.int32))
        per_row = f.chance(0.5)
        ln_out = dict(y=out((m, k), torch.float32), xhat=out((m, k), torch.int16), xhat_exponent=out((1,), torch.int32),
                      x_exponent=out((m if per_row and m > 1 else 1,), torch.int32),
                      rstd_mantissa=out((m,), torch.int64), rstd_exponent=out((m,), torch.int32),
                      gamma_mantissa=out((k,), torch.int16), gamma_exponent=out((1,), torch.int32))
        yield "fixed_point_layer_norm_forward", dict(x=x, gamma=None, beta=None, bits=bits, eps=1e-5, rounding=rounding,
                                                     rsqrt="integer", per_row_input=per_row,
                                                     centered=f.chance(0.7), seed=5, **ln_out)
        saved = dict(xhat=torch.zeros(m, k, dtype=torch.int16), xhat_exponent=torch.zeros(1, dtype=torch.int32),
                     x_exponent=torch.zeros(1, dtype=torch.int32), rstd_mantissa=torch.zeros(m, dtype=torch.int64),
                     rstd_exponent=torch.zeros(m, dtype=torch.int32), gamma_mantissa=torch.zeros(k, dtype=torch.int16),
                     gamma_exponent=torch.zeros(1, dtype=torch.int32))
        yield "fixed_point_layer_norm_backward", dict(dy=f.floats((m, k)), **saved, has_gamma=True,
                                                      centered=f.chance(0.7), grad_bits=bits,
                                                      rounding=rounding, seed=2, dx=out((m, k), torch.float32),
                                                      dgamma=out((k,), torch.float32),
                                                      dbeta=f.pick(None, out((k,), torch.float32)))
        vocab = f.pick(1, 4)
        ids = torch.randint(0, vocab, (m,))
        if f.chance(0.1):
            ids = torch.zeros(1, dtype=torch.long).expand(2**40)  # the output below cannot match it
        yield "fixed_point_embedding_forward", dict(ids=ids, table=f.floats((vocab, n)), bits=bits,
                                                    out=out((m, n), torch.float32))
        yield "fixed_point_embedding_backward", dict(ids=ids, grad=f.floats((m, n)), grad_bits=bits, rounding=rounding,
                                                     seed=4, padding_idx=f.pick(-1, 0), dtable=out((vocab, n), torch.float32))
        block = f.pick(1, 2, 8)
        kb = block * f.pick(0, 1, 2)
        yield "hadamard_transform", dict(x=f.floats((m, kb)), block=block, out=out((m, kb), torch.float32))
        per_row = f.chance(0.5)
        yield "split_gradient", dict(grad=g, seed=1, high=out((m, n), torch.int8), low=out((m, n), torch.int8),
                                     scale=out((m if per_row else 1,), torch.float32))
        codes = lambda rows: out((rows, (kb + 1) // 2), torch.uint8)  # noqa: E731
        scale = lambda rows: out((rows if per_row else 1,), torch.float32)  # noqa: E731
        yield "hq_linear_forward", dict(x=f.floats((m, kb)), w=f.floats((n, kb)), bias=None, block=block,
                                        per_row=per_row, out=out((m, n), torch.float32), x_codes=codes(m),
                                        x_scale=scale(m), w_codes=codes(n), w_scale=scale(n), x_step=None, w_step=None)
        yield "hq_linear_backward", dict(grad=g, x_codes=torch.zeros(m, (kb + 1) // 2, dtype=torch.uint8),
                                         x_scale=torch.ones(m if per_row else 1),
                                         w_codes=torch.zeros(n, (kb + 1) // 2, dtype=torch.uint8),
                                         w_scale=torch.ones(n if per_row else 1), k=kb, block=block, per_row=per_row,
                                         sampling=f.chance(0.5), budget=0.5, seed=3, dx=out((m, kb), torch.float32),
                                         dw=out((n, kb), torch.float32))

    def bad_engine_value(key, value):
        """Besides the usual bad values: an output replaced by an input (aliasing) or by a
        wrongly shaped output that is itself guarded."""
        if isinstance(value, torch.Tensor) and f.chance(0.35):
            kind = f.pick("alias", "shape", "view")
            if kind == "alias" and inputs:
                return f.pick(*inputs)
            if kind == "shape" and value.numel() < 10**6:
                shape = [max(0, s + f.pick(-1, 1, 3)) for s in value.shape] or [2]
                return out(tuple(shape), value.dtype)
            if value.dim() == 2 and value.numel() > 1:
                return out(tuple(value.shape[::-1]), value.dtype).T
        return f.bad_value(key, value)

    while time.monotonic() < deadline:
        for name, valid in builders():
            inputs = [v for v in valid.values() if isinstance(v, torch.Tensor)]
            args = f.mutate(valid, bad=bad_engine_value)
            f.run(name, getattr(_C, name), args, None)
            for buffer, pad, size in guards:
                if bool((buffer[:pad] != 0x5A).any()) or bool((buffer[pad + size:] != 0x5A).any()):
                    f.problem(f"{name}: wrote outside its output ({', '.join(f'{k}={describe(v)}' for k, v in args.items())})")
            guards.clear()
            if time.monotonic() > deadline:
                break


def main(family: str, seed: int, seconds: float) -> None:
    import warnings

    warnings.simplefilter("ignore")
    fuzz = Fuzz(seed)
    start = time.monotonic()
    {"public": fuzz_public, "ops": fuzz_ops, "engine": fuzz_engine}[family](fuzz, start + seconds)
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps({"family": family, "seed": seed, "calls": fuzz.calls, "seconds": round(time.monotonic() - start, 1),
                      "problems": fuzz.problems}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else SEED,
         float(sys.argv[3]) if len(sys.argv) > 3 else SECONDS)
