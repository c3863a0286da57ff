#include "intcore/hadamard.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fixed_point_rows.h"
#include "float_types.h"
#include "parallel.h"

namespace intcore {
namespace {

// In-place fast Walsh-Hadamard transform of one block of n = 2^log2n finite values (Sylvester
// order), then 1/sqrt(n). The butterflies add up to n values, so a block whose largest |v|
// reaches 2^(127 - log2n) could overflow on the way although its result fits: such a block is
// scaled by 2^-(log2n + 1) first (exact for normal floats, and every partial sum then stays
// below 2^127) and multiplied by norm * 2^(log2n + 1) at the end. Other blocks are computed
// as before, so ordinary results do not change; the portable kernel does the same.
void fwht(float* v, int64_t n, int log2n, float norm) {
  float top = 0.0f;
  for (int64_t j = 0; j < n; ++j) top = std::max(top, std::fabs(v[j]));
  const bool scaled = top >= std::ldexp(1.0f, 127 - log2n);
  if (scaled) {
    const float down = std::ldexp(1.0f, -(log2n + 1));
    for (int64_t j = 0; j < n; ++j) v[j] *= down;
    norm *= std::ldexp(1.0f, log2n + 1);
  }
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
  for (int64_t j = 0; j < n; ++j) v[j] *= norm;
}

}  // namespace

void hadamard_transform(const TensorView& x, int64_t block, const TensorView& out) {
  const std::string fn = "hadamard";
  check_cpu(fn, x);
  check_floating(fn, x);
  check_dim(fn, x, 2);
  if (block < 1 || block > 32768 || (block & (block - 1)) != 0) {
    throw_value_error(fn + ": block_size must be a power of two in 1..32768, got " + std::to_string(block));
  }
  const int64_t rows = x.size(0), n = x.size(1);
  if (n % block != 0) {
    throw_value_error(fn + ": the last dimension of " + x.name() + " (" + std::to_string(n) +
                      ") must be a multiple of block_size (" + std::to_string(block) + ")");
  }
  check_shape(fn, out, {rows, n});
  check_contiguous(fn, out);
  if (out.dtype() != DType::kFloat32 && out.dtype() != DType::kBFloat16 && out.dtype() != DType::kFloat16) {
    throw_type_error(fn + ": " + out.name() + " must be float32, bfloat16 or float16, got " + dtype_name(out.dtype()));
  }
  check_cpu(fn, out);
  check_disjoint(fn, {&out}, {&x});
  row_absmax(fn, x);  // raises on NaN or Inf, before anything is written
  const float norm = static_cast<float>(1.0 / std::sqrt(static_cast<double>(block)));
  int log2_block = 0;
  while ((int64_t{1} << log2_block) < block) ++log2_block;
  dispatch_float(fn, x, [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(x.data());
    parallel_for(rows, n * 8, [&](int64_t r0, int64_t r1) {
      std::vector<float> row(static_cast<size_t>(n));
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = 0; c < n; ++c) row[c] = to_float(src[r * x.stride(0) + c * x.stride(1)]);
        for (int64_t b = 0; b < n; b += block) fwht(row.data() + b, block, log2_block, norm);
        switch (out.dtype()) {
          case DType::kFloat32: std::copy(row.begin(), row.end(), static_cast<float*>(out.data()) + r * n); break;
          case DType::kBFloat16: {
            BFloat16* dst = static_cast<BFloat16*>(out.data()) + r * n;
            for (int64_t c = 0; c < n; ++c) dst[c] = to_bfloat16(row[c]);
            break;
          }
          default: {
            Half* dst = static_cast<Half*>(out.data()) + r * n;
            for (int64_t c = 0; c < n; ++c) dst[c] = to_half(row[c]);
          }
        }
      }
    });
  });
}

}  // namespace intcore
