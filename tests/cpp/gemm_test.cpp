// Every GEMM bit-exact against the naive int64 reference, with every CPU kernel.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>

#include "test_util.h"

namespace intcore {
namespace {

using test::Array;
using test::for_each_cpu_kernel;
using test::random_ints;
using test::reference_gemm;

struct Shape { int64_t m, n, k; };
const Shape kOddShapes[] = {{1, 1, 1}, {7, 5, 1}, {13, 67, 29}, {97, 131, 263}, {6, 64, 4}, {130, 7, 515}, {3, 200, 77}};

TEST(GemmExact, Int8MatchesReferenceOnOddShapes) {
  for_each_cpu_kernel([](CpuKernel) {
    for (const Shape& s : kOddShapes) {
      auto a = random_ints<int8_t>(s.m, s.k, -128, 127, 1);
      auto b = random_ints<int8_t>(s.n, s.k, -128, 127, 2);
      Array<int32_t> c(s.m, s.n);
      gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c"));
      const auto ref = reference_gemm(s.m, s.n, s.k, a, b);
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) ASSERT_EQ(c(i, j), ref(i, j)) << s.m << "x" << s.n << "x" << s.k;
    }
  });
}

TEST(GemmExact, Int8ExtremesAtLargeKWrapBackExactly) {
  // All -128: every product is 2^14 and the row sum 2^14 * K, near the int32 limit at K = 2^17 - 4.
  for_each_cpu_kernel([](CpuKernel) {
    const int64_t k = (int64_t{1} << 17) - 4;
    Array<int8_t> a(2, k, -128), b(3, k, -128);
    b(1, 0) = 127;
    Array<int32_t> c(2, 3);
    gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c"));
    EXPECT_EQ(c(0, 0), int64_t{16384} * k);
    EXPECT_EQ(c(1, 1), int64_t{16384} * (k - 1) - 128 * 127);
  });
}

TEST(GemmExact, Int8RefusesKThatCanOverflowInt32) {
  Array<int8_t> a(1, int64_t{1} << 17), b(1, int64_t{1} << 17);
  Array<int32_t> c(1, 1);
  EXPECT_THROW(gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c")), Error);
  Array<int64_t> c64(1, 1);
  gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c64.view("c"));
  EXPECT_EQ(c64(0, 0), 0);
}

TEST(GemmExact, EmptyAndZeroK) {
  Array<int8_t> a(0, 5), b(4, 5), a2(3, 0), b2(4, 0);
  Array<int32_t> c(0, 4), c2(3, 4, 99);
  gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c"));
  gemm_exact(IntMatrix::of(a2.view("a")), IntMatrix::of(b2.view("b")), c2.view("c"));
  for (int32_t v : c2.data) EXPECT_EQ(v, 0);
}

TEST(GemmExact, Int16LimbsExactAt16BitsWithK4096) {
  for_each_cpu_kernel([](CpuKernel) {
    const int64_t m = 37, n = 70, k = 4096;
    auto a = random_ints<int16_t>(m, k, -32768, 32767, 3);
    auto b = random_ints<int16_t>(n, k, -32768, 32767, 4);
    a(0, 0) = -32768;
    b(0, 0) = -32768;
    a(1, 5) = 32767;
    Array<int64_t> c(m, n);
    gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c"));
    const auto ref = reference_gemm(m, n, k, a, b);
    EXPECT_EQ(c.data, ref.data);
  });
}

TEST(GemmExact, Int16AllExtremesAcrossSeveralKChunks) {
  // K spans three chunks of the limb split; all-minimum operands maximize every limb sum.
  const int64_t k = 2 * 8192 * 4 + 1000;
  Array<int16_t> a(2, k, -32768), b(1, k, -32768);
  b(0, 7) = 32767;
  Array<int64_t> c(2, 1);
  gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c"));
  EXPECT_EQ(c(0, 0), (int64_t{1} << 30) * (k - 1) - int64_t{32768} * 32767);
}

TEST(GemmExact, MixedInt16TimesInt8) {
  for_each_cpu_kernel([](CpuKernel) {
    const int64_t m = 19, n = 23, k = 301;
    auto a = random_ints<int16_t>(m, k, -32768, 32767, 5);
    auto b = random_ints<int8_t>(n, k, -128, 127, 6);
    Array<int64_t> c(m, n), c2(n, m);
    gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c"));
    gemm_exact(IntMatrix::of(b.view("b")), IntMatrix::of(a.view("a")), c2.view("c"));
    const auto ref = reference_gemm(m, n, k, a, b);
    EXPECT_EQ(c.data, ref.data);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(c2(j, i), ref(i, j));
  });
}

TEST(GemmExact, PackedInt4MatchesReference) {
  for_each_cpu_kernel([](CpuKernel) {
    for (const Shape& s : kOddShapes) {
      auto a = random_ints<int8_t>(s.m, s.k, -8, 7, 7);
      auto b = random_ints<int8_t>(s.n, s.k, -8, 7, 8);
      Array<uint8_t> pa(s.m, (s.k + 1) / 2), pb(s.n, (s.k + 1) / 2);
      pack_int4(a.view("a"), pa.view("pa"));
      pack_int4(b.view("b"), pb.view("pb"));
      Array<int32_t> c(s.m, s.n);
      gemm_exact(IntMatrix::int4(pa.view("a"), s.k), IntMatrix::int4(pb.view("b"), s.k), c.view("c"));
      const auto ref = reference_gemm(s.m, s.n, s.k, a, b);
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) ASSERT_EQ(c(i, j), ref(i, j));
    }
  });
}

TEST(GemmExact, TransposedOperandsNeedNoCopy) {
  const int64_t m = 33, n = 71, k = 45;
  auto at = random_ints<int8_t>(k, m, -128, 127, 9);   // A^T stored
  auto b = random_ints<int16_t>(n, k, -3000, 3000, 10);
  Array<int64_t> c(m, n);
  gemm_exact(IntMatrix::of(at.view("a").transposed()), IntMatrix::of(b.view("b")), c.view("c"));
  const auto ref = reference_gemm(m, n, k, [&](int64_t i, int64_t t) { return at(t, i); }, b);
  EXPECT_EQ(c.data, ref.data);
}

// Operands are packed straight from their values: rows contiguous or strided (transposed views),
// on either side, with K over two chunks plus a partial group of four, and the most negative
// value in every row. Out is int32 for int8 and int64 for int16.
template <typename T, typename Out>
void check_every_layout(int64_t m, int64_t n, int64_t k, int lo, int hi) {
  auto a = random_ints<T>(m, k, lo, hi, 21);
  auto b = random_ints<T>(n, k, lo, hi, 22);
  for (int64_t i = 0; i < m; ++i) a(i, i) = static_cast<T>(lo);
  for (int64_t j = 0; j < n; ++j) b(j, k - 1 - j) = static_cast<T>(lo);
  Array<T> at(k, m), bt(k, n);
  for (int64_t t = 0; t < k; ++t) {
    for (int64_t i = 0; i < m; ++i) at(t, i) = a(i, t);
    for (int64_t j = 0; j < n; ++j) bt(t, j) = b(j, t);
  }
  const auto ref = reference_gemm(m, n, k, a, b);
  for (int layout = 0; layout < 4; ++layout) {
    const TensorView av = layout & 1 ? at.view("a").transposed() : a.view("a");
    const TensorView bv = layout & 2 ? bt.view("b").transposed() : b.view("b");
    Array<Out> c(m, n);
    gemm_exact(IntMatrix::of(av), IntMatrix::of(bv), c.view("c"));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(c(i, j), ref(i, j)) << "layout " << layout;
  }
}

TEST(GemmExact, Int8ContiguousAndTransposedAcrossKChunks) {
  for_each_cpu_kernel([](CpuKernel) { check_every_layout<int8_t, int32_t>(13, 67, 8192 * 4 + 37, -128, 127); });
}

TEST(GemmExact, Int16ContiguousAndTransposedAcrossKChunks) {
  for_each_cpu_kernel([](CpuKernel) { check_every_layout<int16_t, int64_t>(13, 67, 8192 * 4 + 38, -32768, 32767); });
}

TEST(GemmExact, ReusedPanelMemoryLeavesNoOldBytesInTheResult) {
  // Panel memory is reused between GEMMs on a thread without clearing. Fill it with nonzero
  // bytes, then multiply operands whose K leaves a partial last group, in every layout (rows
  // packed whole, by the AVX-512 packer, or four columns at a time) and as packed int4: the
  // missing k must read as zero on both sides.
  for_each_cpu_kernel([](CpuKernel) {
    for (const int bits : {8, 16, 4}) {
      const int64_t big = 200, m = 37, n = 70;
      Array<int16_t> fill16(big, big, -1);
      Array<int8_t> fill8(big, big, -1);
      Array<int64_t> sink(big, big);
      const TensorView fill = bits == 16 ? fill16.view("a") : fill8.view("a");
      const int lo = bits == 16 ? -32768 : bits == 8 ? -128 : -8, hi = bits == 16 ? 32767 : bits == 8 ? 127 : 7;
      for (const int64_t k : {int64_t{41}, int64_t{42}, int64_t{43}}) {
        auto a = random_ints<int16_t>(m, k, lo, hi, 41);
        auto b = random_ints<int16_t>(n, k, lo, hi, 42);
        Array<int8_t> a8(m, k), b8(n, k);
        for (size_t i = 0; i < a.data.size(); ++i) a8.data[i] = static_cast<int8_t>(a.data[i]);
        for (size_t i = 0; i < b.data.size(); ++i) b8.data[i] = static_cast<int8_t>(b.data[i]);
        Array<int16_t> at(k, m), bt(k, n);
        Array<int8_t> at8(k, m), bt8(k, n);
        for (int64_t t = 0; t < k; ++t) {
          for (int64_t i = 0; i < m; ++i) at(t, i) = a(i, t), at8(t, i) = a8(i, t);
          for (int64_t j = 0; j < n; ++j) bt(t, j) = b(j, t), bt8(t, j) = b8(j, t);
        }
        Array<uint8_t> a4(m, (k + 1) / 2), b4(n, (k + 1) / 2);
        if (bits == 4) {
          pack_int4(a8.view("a"), a4.view("a4"));
          pack_int4(b8.view("b"), b4.view("b4"));
        }
        const auto ref = reference_gemm(m, n, k, a, b);
        for (int layout = 0; layout < (bits == 4 ? 1 : 4); ++layout) {
          IntMatrix am, bm;
          if (bits == 4) {
            am = IntMatrix::int4(a4.view("a"), k);
            bm = IntMatrix::int4(b4.view("b"), k);
          } else if (bits == 16) {
            am = IntMatrix::of(layout & 1 ? at.view("a").transposed() : a.view("a"));
            bm = IntMatrix::of(layout & 2 ? bt.view("b").transposed() : b.view("b"));
          } else {
            am = IntMatrix::of(layout & 1 ? at8.view("a").transposed() : a8.view("a"));
            bm = IntMatrix::of(layout & 2 ? bt8.view("b").transposed() : b8.view("b"));
          }
          gemm_exact(IntMatrix::of(fill), IntMatrix::of(fill), sink.view("c"));  // dirty every slot
          Array<int64_t> c(m, n);
          gemm_exact(am, bm, c.view("c"));
          ASSERT_EQ(c.data, ref.data) << bits << " bits, K " << k << ", layout " << layout;
        }
      }
    }
  });
}

TEST(GemmExact, LargeInt32ResultStreamedOrNotIsExact) {
  // A C of over 2 MiB is written by the kernel with streaming stores when it is 64-byte aligned
  // with rows of 16k ints, and with plain stores when it is not (C shifted by one int). Both,
  // with partial tiles at the bottom and right edges.
  for_each_cpu_kernel([](CpuKernel) {
    const int64_t m = 1031, n = 528, k = 70;
    auto a = random_ints<int8_t>(m, k, -128, 127, 31);
    auto b = random_ints<int8_t>(n, k, -128, 127, 32);
    const auto ref = reference_gemm(m, n, k, a, b);
    const size_t bytes = static_cast<size_t>(m * n + 16) * sizeof(int32_t);
    std::unique_ptr<int32_t, decltype(&std::free)> buffer(static_cast<int32_t*>(std::aligned_alloc(64, bytes)),
                                                          &std::free);
    ASSERT_NE(buffer, nullptr);
    for (int shift : {0, 1}) {
      int32_t* c = buffer.get() + shift;
      gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")),
                 TensorView(c, DType::kInt32, {m, n}, "c"));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) ASSERT_EQ(c[i * n + j], ref(i, j)) << "shift " << shift;
    }
  });
}

TEST(GemmExact, BadArgumentsRaiseNamedErrors) {
  Array<int8_t> a(2, 3), b(2, 4);
  Array<int32_t> c(2, 2);
  try {
    gemm_exact(IntMatrix::of(a.view("a")), IntMatrix::of(b.view("b")), c.view("c"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    EXPECT_NE(std::string(e.what()).find("same K"), std::string::npos);
  }
  Array<float> f(2, 3);
  EXPECT_THROW(gemm_exact(IntMatrix::of(f.view("a")), IntMatrix::of(a.view("b")), c.view("c")), Error);
  Array<int16_t> w(2, 3);
  EXPECT_THROW(gemm_exact(IntMatrix::of(w.view("a")), IntMatrix::of(w.view("b")), c.view("c")), Error);
}

TEST(GemmExact, NegativeInt4KIsRefused) {
  Array<uint8_t> a(2, 0), b(2, 0);
  Array<int32_t> c(2, 2);
  try {
    gemm_exact(IntMatrix::int4(a.view("a"), -1), IntMatrix::int4(b.view("b"), -1), c.view("c"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("K (int4_k) must be >= 0, got -1"), std::string::npos);
  }
}

TEST(GemmScaled, RefusesNonFiniteBiasAndAliasedOutput) {
  Array<int8_t> a(2, 3, 1), b(2, 3, 1);
  float one = 1.0f;
  const TensorView s(&one, DType::kFloat32, {1}, "scale");
  Array<float> out(2, 2), bias(1, 2, std::numeric_limits<float>::infinity());
  const TensorView bias_view(bias.data.data(), DType::kFloat32, {2}, "bias");
  EXPECT_THROW(gemm_scaled(IntMatrix::of(a.view("a")), s, IntMatrix::of(b.view("b")), s, &bias_view, out.view("out")),
               Error);
  // An output over the memory of operand a (a float32 [1, 1] view of its first bytes).
  Array<int8_t> a1(1, 4), b1(1, 4);
  const TensorView alias(a1.data.data(), DType::kFloat32, {1, 1}, "out");
  EXPECT_THROW(gemm_scaled(IntMatrix::of(a1.view("a")), s, IntMatrix::of(b1.view("b")), s, nullptr, alias), Error);
}

TEST(GemmScaled, EpilogueAppliesScalesExponentsAndBias) {
  for_each_cpu_kernel([](CpuKernel) {
    const int64_t m = 9, n = 70, k = 33;
    auto a = random_ints<int8_t>(m, k, -128, 127, 11);
    auto b = random_ints<int16_t>(n, k, -32768, 32767, 12);
    Array<float> sa(m, 1), bias(n, 1), out(m, n);
    Array<int32_t> eb(1, 1, -20);
    for (int64_t i = 0; i < m; ++i) sa(i, 0) = 0.01f * static_cast<float>(i + 1);
    for (int64_t j = 0; j < n; ++j) bias(j, 0) = static_cast<float>(j) - 3.5f;
    const TensorView sa_v(sa.data.data(), DType::kFloat32, {m}, "a_scale");
    const TensorView eb_v(eb.data.data(), DType::kInt32, {1}, "b_scale");
    const TensorView bias_v(bias.data.data(), DType::kFloat32, {n}, "bias");
    gemm_scaled(IntMatrix::of(a.view("a")), sa_v, IntMatrix::of(b.view("b")), eb_v, &bias_v, out.view("out"));
    const auto ref = reference_gemm(m, n, k, a, b);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const float expected =
            static_cast<float>(static_cast<double>(ref(i, j)) * static_cast<double>(sa(i, 0)) * std::ldexp(1.0, -20)) +
            bias(j, 0);
        ASSERT_EQ(out(i, j), expected);
      }
  });
}

TEST(GemmScaled, LargeOutputStreamedOrNotIsTheSame) {
  // A float out of over 2 MiB, 64-byte aligned with rows of 16k floats, is written by the
  // streamed epilogue under the AVX-512 kernel; shifted by one float it is not. Both give the
  // scalar epilogue's floats, partial tiles included.
  for_each_cpu_kernel([](CpuKernel) {
    const int64_t m = 1031, n = 528, k = 70;
    auto a = random_ints<int8_t>(m, k, -128, 127, 51);
    auto b = random_ints<int8_t>(n, k, -128, 127, 52);
    Array<float> sa(m, 1), sb(n, 1), bias(n, 1);
    for (int64_t i = 0; i < m; ++i) sa(i, 0) = 0.001f * static_cast<float>(i % 97 + 1);
    for (int64_t j = 0; j < n; ++j) sb(j, 0) = 0.37f / static_cast<float>(j + 1), bias(j, 0) = 0.25f * j - 9.0f;
    const TensorView sa_v(sa.data.data(), DType::kFloat32, {m}, "a_scale");
    const TensorView sb_v(sb.data.data(), DType::kFloat32, {n}, "b_scale");
    const TensorView bias_v(bias.data.data(), DType::kFloat32, {n}, "bias");
    const auto ref = reference_gemm(m, n, k, a, b);
    const size_t bytes = static_cast<size_t>(m * n + 16) * sizeof(float);
    std::unique_ptr<float, decltype(&std::free)> buffer(static_cast<float*>(std::aligned_alloc(64, bytes)), &std::free);
    ASSERT_NE(buffer, nullptr);
    for (int shift : {0, 1}) {
      float* out = buffer.get() + shift;
      gemm_scaled(IntMatrix::of(a.view("a")), sa_v, IntMatrix::of(b.view("b")), sb_v, &bias_v,
                  TensorView(out, DType::kFloat32, {m, n}, "out"));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const float expected = static_cast<float>(static_cast<double>(ref(i, j)) * static_cast<double>(sa(i, 0)) *
                                                    static_cast<double>(sb(j, 0))) + bias(j, 0);
          ASSERT_EQ(out[i * n + j], expected) << "shift " << shift << " at " << i << ", " << j;
        }
    }
  });
}

}  // namespace
}  // namespace intcore
