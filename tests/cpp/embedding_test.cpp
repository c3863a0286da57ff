#include <cmath>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "test_util.h"

namespace intcore {
namespace {

using test::Array;
using test::random_floats;

TEST(FixedPointEmbedding, ForwardGathersMappedRows) {
  auto table = random_floats(10, 6, 1);
  std::vector<int64_t> ids = {3, 3, 0, 9};
  Array<float> out(4, 6), mapped(10, 6);
  fixed_point_embedding_forward(TensorView(ids.data(), DType::kInt64, {4}, "ids"), table.view("table"), 8,
                                out.view("out"));
  Array<int8_t> q(10, 6);
  std::vector<int32_t> e(1);
  quantize_fixed_point(table.view("table"), q.view("q"), TensorView(e.data(), DType::kInt32, {1}), 8,
                       Rounding::kNearest, {});
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t c = 0; c < 6; ++c) EXPECT_EQ(out(t, c), std::ldexp(static_cast<float>(q(ids[t], c)), e[0]));
}

TEST(FixedPointEmbedding, BackwardIsExactWithRepeatedIdsAndAnyThreadCount) {
  const int64_t vocab = 50, dim = 33, tokens = 500;
  auto grad = random_floats(tokens, dim, 2);
  std::vector<int64_t> ids(tokens);
  for (int64_t t = 0; t < tokens; ++t) ids[t] = (t * 7) % 13;  // heavy repetition
  const TensorView idv(ids.data(), DType::kInt64, {tokens}, "ids");
  // Reference: the same mapping of grad, summed in int64.
  Array<int16_t> q(tokens, dim);
  std::vector<int32_t> e(1);
  quantize_fixed_point(grad.view("grad"), q.view("q"), TensorView(e.data(), DType::kInt32, {1}), 12,
                       Rounding::kStochastic, {21, 0});
  Array<int64_t> ref(vocab, dim);
  for (int64_t t = 0; t < tokens; ++t)
    if (ids[t] != 5)
      for (int64_t c = 0; c < dim; ++c) ref(ids[t], c) += q(t, c);
  for (int threads : {1, 2, 3}) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Array<float> dtable(vocab, dim, -1.0f);
    fixed_point_embedding_backward(idv, grad.view("grad"), 12, Rounding::kStochastic, {21, 0}, 5, dtable.view("dtable"));
    for (int64_t v = 0; v < vocab; ++v)
      for (int64_t c = 0; c < dim; ++c)
        ASSERT_EQ(dtable(v, c), static_cast<float>(std::ldexp(static_cast<double>(ref(v, c)), e[0]))) << threads;
  }
#ifdef _OPENMP
  omp_set_num_threads(omp_get_num_procs());
#endif
}

TEST(FixedPointEmbedding, IdsOutOfRangeAreNamed) {
  auto table = random_floats(4, 3, 3);
  std::vector<int64_t> ids = {1, 4};
  Array<float> out(2, 3);
  try {
    fixed_point_embedding_forward(TensorView(ids.data(), DType::kInt64, {2}, "input"), table.view("weight"), 8,
                                  out.view("out"));
    FAIL();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("input holds 4 at position 1, outside [0, 4)"), std::string::npos);
  }
}

TEST(FixedPointEmbedding, OutputShapeIsCheckedBeforeAnyIdIsRead) {
  // 2^40 ids (a zero-stride view of one) and an output of 3 rows: refused at once, unread.
  int64_t id = 0;
  const int64_t shape[1] = {int64_t{1} << 40}, strides[1] = {0};
  const TensorView ids(&id, DType::kInt64, 1, shape, strides, Device{}, "input");
  auto table = random_floats(1, 7, 3);
  Array<float> out(3, 7);
  try {
    fixed_point_embedding_forward(ids, table.view("weight"), 8, out.view("out"));
    FAIL();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("out must have shape [1099511627776, 7]"), std::string::npos);
  }
  Array<float> grad(3, 7), dtable(1, 7);
  EXPECT_THROW(fixed_point_embedding_backward(ids, grad.view("grad"), 8, Rounding::kNearest, {}, -1, dtable.view("d")),
               Error);
}

}  // namespace
}  // namespace intcore
