#include "intcore/embedding.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fixed_point_rows.h"
#include "float_types.h"
#include "huge_pages.h"
#include "parallel.h"

namespace intcore {
namespace {

// The ids' dtype, rank and device: checked before any output, so that outputs can be sized.
void check_ids_layout(const std::string& fn, const TensorView& ids) {
  check_cpu(fn, ids);
  check_dtype(fn, ids, DType::kInt64);
  check_dim(fn, ids, 1);
}

// Every id in [0, vocab): a pass over the ids, so it runs after every shape check.
void check_ids(const std::string& fn, const TensorView& ids, int64_t vocab) {
  const int64_t* p = static_cast<const int64_t*>(ids.data());
  for (int64_t t = 0; t < ids.size(0); ++t) {
    const int64_t id = p[t * ids.stride(0)];
    if (id < 0 || id >= vocab) {
      throw_value_error(fn + ": " + ids.name() + " holds " + std::to_string(id) + " at position " + std::to_string(t) +
                        ", outside [0, " + std::to_string(vocab) + ")");
    }
  }
}

}  // namespace

void fixed_point_embedding_forward(const TensorView& ids, const TensorView& table, int bits, const TensorView& out) {
  const std::string fn = "fixed_point_embedding";
  check_cpu(fn, table);
  check_floating(fn, table);
  check_dim(fn, table, 2);
  if (bits < 2 || bits > 16) throw_value_error(fn + ": bits must be in 2..16, got " + std::to_string(bits));
  const int64_t vocab = table.size(0), dim = table.size(1);
  check_ids_layout(fn, ids);
  const int64_t tokens = ids.size(0);
  check_dtype(fn, out, DType::kFloat32);
  check_shape(fn, out, {tokens, dim});
  check_contiguous(fn, out);
  check_cpu(fn, out);
  check_disjoint(fn, {&out}, {&ids, &table});
  check_ids(fn, ids, vocab);
  // The exponent is the whole table's; only the gathered rows are rounded (to nearest, as
  // quantize_fixed_point does for weights).
  const int32_t exponent = shared_exponent(fn, table, bits);
  const double qmax = static_cast<double>((1 << (bits - 1)) - 1);
  const int64_t* id = static_cast<const int64_t*>(ids.data());
  float* y = out.data_as<float>();
  dispatch_float(fn, table, [&](auto tag) {
    using T = decltype(tag);
    const T* base = static_cast<const T*>(table.data());
    const double step = pow2(exponent), inv_step = pow2(-exponent);
    parallel_for(tokens, dim, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const T* row = base + id[t * ids.stride(0)] * table.stride(0);
        for (int64_t c = 0; c < dim; ++c) {
          const double v = static_cast<double>(to_float(row[c * table.stride(1)])) * inv_step;
          y[t * dim + c] = static_cast<float>(std::clamp(std::nearbyint(v), -qmax, qmax) * step);
        }
      }
    });
  });
}

void fixed_point_embedding_backward(const TensorView& ids, const TensorView& grad, int grad_bits, Rounding rounding,
                                    RandomStream stream, int64_t padding_idx, const TensorView& dtable) {
  const std::string fn = "fixed_point_embedding_backward";
  check_cpu(fn, grad);
  check_floating(fn, grad);
  check_dim(fn, grad, 2);
  if (grad_bits < 2 || grad_bits > 16) {
    throw_value_error(fn + ": grad_bits must be in 2..16, got " + std::to_string(grad_bits));
  }
  check_dtype(fn, dtable, DType::kFloat32);
  check_dim(fn, dtable, 2);
  check_contiguous(fn, dtable);
  check_cpu(fn, dtable);
  const int64_t vocab = dtable.size(0), dim = dtable.size(1);
  check_ids_layout(fn, ids);
  const int64_t tokens = ids.size(0);
  check_shape(fn, grad, {tokens, dim});
  check_disjoint(fn, {&dtable}, {&ids, &grad});
  check_ids(fn, ids, vocab);

  const FixedPointRows g = quantize_per_tensor(grad, grad_bits, rounding, stream);
  const int64_t* id = static_cast<const int64_t*>(ids.data());
  // Group the tokens by id; each group's rows are summed in int64 by one thread, so the sums
  // are exact and the result never depends on the thread count or the order of repeated ids.
  std::vector<int64_t> order(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) order[t] = t;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return id[a * ids.stride(0)] < id[b * ids.stride(0)]; });
  std::vector<int64_t> group_start;
  for (int64_t i = 0; i < tokens; ++i) {
    if (i == 0 || id[order[i] * ids.stride(0)] != id[order[i - 1] * ids.stride(0)]) group_start.push_back(i);
  }
  group_start.push_back(tokens);
  float* out = dtable.data_as<float>();
  advise_huge_pages(out, static_cast<size_t>(vocab * dim) * sizeof(float));
  parallel_for(vocab, dim / 4 + 1, [&](int64_t r0, int64_t r1) {
    std::fill(out + r0 * dim, out + r1 * dim, 0.0f);  // rows no token touched
  });
  const double step = pow2(g.exponent(0));
  const int64_t groups = static_cast<int64_t>(group_start.size()) - 1;
  parallel_for(groups, tokens / std::max<int64_t>(groups, 1) * dim + dim, [&](int64_t g0, int64_t g1) {
    std::vector<int64_t> acc(static_cast<size_t>(dim));
    for (int64_t k = g0; k < g1; ++k) {
      const int64_t row = id[order[group_start[k]] * ids.stride(0)];
      if (row == padding_idx) continue;
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t i = group_start[k]; i < group_start[k + 1]; ++i) {
        const int32_t* src = g.mantissa.data() + order[i] * dim;
        for (int64_t c = 0; c < dim; ++c) acc[c] += src[c];
      }
      for (int64_t c = 0; c < dim; ++c) out[row * dim + c] = static_cast<float>(static_cast<double>(acc[c]) * step);
    }
  });
}

}  // namespace intcore
