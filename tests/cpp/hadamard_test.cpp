#include <cmath>

#include "../../cpp/src/float_types.h"
#include "test_util.h"

namespace intcore {
namespace {

using test::Array;
using test::random_floats;

// Sylvester Hadamard matrix of order n (entries +-1).
std::vector<int> sylvester(int64_t n) {
  std::vector<int> h(static_cast<size_t>(n * n), 1);
  for (int64_t size = 1; size < n; size *= 2)
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j) {
        const int v = h[i * n + j];
        h[i * n + j + size] = v;
        h[(i + size) * n + j] = v;
        h[(i + size) * n + j + size] = -v;
      }
  return h;
}

TEST(Hadamard, MatchesTheExplicitBlockDiagonalProduct) {
  for (int64_t block : {1, 2, 8, 32}) {
    auto x = random_floats(5, 64, 1);
    Array<float> y(5, 64);
    hadamard_transform(x.view("x"), block, y.view("y"));
    const std::vector<int> h = sylvester(block);
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t b = 0; b < 64; b += block)
        for (int64_t i = 0; i < block; ++i) {
          double expected = 0;
          for (int64_t j = 0; j < block; ++j) expected += h[i * block + j] * static_cast<double>(x(r, b + j));
          ASSERT_NEAR(y(r, b + i), expected / std::sqrt(static_cast<double>(block)), 1e-5) << block;
        }
  }
}

TEST(Hadamard, OrthonormalAndSelfInverse) {
  auto x = random_floats(3, 4096, 2);
  Array<float> y(3, 4096), z(3, 4096);
  hadamard_transform(x.view("x"), 4096, y.view("y"));
  hadamard_transform(y.view("y"), 4096, z.view("z"));
  for (int64_t r = 0; r < 3; ++r) {
    double nx = 0, ny = 0;
    for (int64_t c = 0; c < 4096; ++c) {
      nx += x(r, c) * x(r, c);
      ny += y(r, c) * y(r, c);
      ASSERT_NEAR(z(r, c), x(r, c), 2e-5);
    }
    EXPECT_NEAR(ny / nx, 1.0, 1e-5);
  }
}

TEST(Hadamard, HalfPrecisionOutputsRoundToNearestEven) {
  auto x = random_floats(2, 16, 3);
  Array<float> y(2, 16);
  std::vector<uint16_t> bf(32), hf(32);
  hadamard_transform(x.view("x"), 16, y.view("y"));
  hadamard_transform(x.view("x"), 16, TensorView(bf.data(), DType::kBFloat16, {2, 16}, "bf"));
  hadamard_transform(x.view("x"), 16, TensorView(hf.data(), DType::kFloat16, {2, 16}, "hf"));
  for (int i = 0; i < 32; ++i) {
    // bfloat16 keeps 8 significant bits, float16 11: each within half a unit of the last place.
    const float b = bits_to_float(static_cast<uint32_t>(bf[i]) << 16);
    EXPECT_LE(std::fabs(b - y.data[i]), std::fabs(y.data[i]) * std::ldexp(1.0f, -8) + 1e-30f);
    float h;
    {
      const Half half{hf[i]};
      h = to_float(half);
    }
    EXPECT_LE(std::fabs(h - y.data[i]), std::fabs(y.data[i]) * std::ldexp(1.0f, -11) + 1e-7f);
  }
}

TEST(Hadamard, RejectsBadBlocks) {
  auto x = random_floats(2, 24, 4);
  Array<float> y(2, 24);
  EXPECT_THROW(hadamard_transform(x.view("x"), 16, y.view("y")), Error);  // 24 % 16 != 0
  EXPECT_THROW(hadamard_transform(x.view("x"), 3, y.view("y")), Error);
  EXPECT_THROW(hadamard_transform(x.view("x"), 65536, y.view("y")), Error);
}

TEST(Hadamard, LargeFiniteInputsGiveTheirFiniteResult) {
  // 128 values of 3e36 sum to 3.8e38 > FLT_MAX before the 1/sqrt(128) brings them back to 3.4e37.
  for (float v : {3e36f, -3e36f, 3.4e38f}) {
    Array<float> x(1, 128, v), y(1, 128);
    hadamard_transform(x.view("x"), 128, y.view("y"));
    const double expected = static_cast<double>(v) * 128.0 / std::sqrt(128.0);
    if (std::fabs(expected) < 3.4e38) ASSERT_NEAR(y(0, 0) / expected, 1.0, 1e-6) << v;
    for (int64_t c = 1; c < 128; ++c) ASSERT_EQ(y(0, c), 0.0f) << v;  // the other rows of H cancel
  }
  // A block of mixed magnitudes next to an ordinary one: the ordinary block is unchanged.
  auto x = random_floats(1, 64, 7);
  Array<float> ordinary(1, 64);
  hadamard_transform(x.view("x"), 32, ordinary.view("y"));
  x(0, 40) = 2e38f;
  Array<float> y(1, 64);
  hadamard_transform(x.view("x"), 32, y.view("y"));
  for (int64_t c = 0; c < 32; ++c) ASSERT_EQ(y(0, c), ordinary(0, c));
  for (int64_t c = 32; c < 64; ++c) ASSERT_TRUE(std::isfinite(y(0, c)));
}

TEST(Hadamard, RefusesNonFiniteInputAndAliasedOutput) {
  auto x = random_floats(2, 8, 5);
  Array<float> y(2, 8);
  x(1, 3) = std::nanf("");
  EXPECT_THROW(hadamard_transform(x.view("x"), 8, y.view("y")), Error);
  x(1, 3) = 1.0f;
  try {
    hadamard_transform(x.view("x"), 8, x.view("y"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("y must not share memory with x"), std::string::npos);
  }
}

}  // namespace
}  // namespace intcore
