// Embedding lookup in dynamic fixed point (docs/integer-finetuning.md).
//
// Forward gathers rows of the table mapped to `bits` bits (one exponent for the whole table,
// round to nearest). Backward maps the output gradient to `grad_bits` bits with one exponent
// and scatter-adds the integer rows into an int64 table: exact, so the result is the same
// whatever the thread count or the order of repeated ids. Rows at padding_idx get no gradient.
#pragma once

#include <cstdint>

#include "intcore/philox.h"
#include "intcore/quantize.h"
#include "intcore/tensor_view.h"

namespace intcore {

// ids: int64 [T] in [0, V); table: [V, D] any float dtype; out: float32 [T, D].
void fixed_point_embedding_forward(const TensorView& ids, const TensorView& table, int bits, const TensorView& out);

// grad: [T, D] any float dtype; dtable: float32 [V, D]. padding_idx < 0 means none.
void fixed_point_embedding_backward(const TensorView& ids, const TensorView& grad, int grad_bits, Rounding rounding,
                                    RandomStream stream, int64_t padding_idx, const TensorView& dtable);

}  // namespace intcore
