#include <gtest/gtest.h>

#include "intcore/tensor_view.h"

namespace intcore {
namespace {

TEST(TensorView, ContiguityAndTranspose) {
  float data[6];
  TensorView v(data, DType::kFloat32, {2, 3}, "x");
  EXPECT_TRUE(v.is_contiguous());
  EXPECT_EQ(v.numel(), 6);
  const TensorView t = v.transposed();
  EXPECT_EQ(t.size(0), 3);
  EXPECT_EQ(t.stride(0), 1);
  EXPECT_EQ(t.stride(1), 3);
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.shape_str(), "[3, 2]");
}

TEST(TensorView, SizeOneDimensionsIgnoreTheirStride) {
  float data[3];
  const int64_t shape[2] = {1, 3}, strides[2] = {99, 1};
  EXPECT_TRUE(TensorView(data, DType::kFloat32, 2, shape, strides).is_contiguous());
}

TEST(TensorView, ChecksNameTheArgument) {
  int8_t data[4];
  TensorView v(data, DType::kInt8, {2, 2}, "weight");
  try {
    check_dtype("op", v, DType::kFloat32);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kType);
    EXPECT_STREQ(e.what(), "op: weight must be float32, got int8");
  }
  try {
    check_shape("op", v, {2, 3});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    EXPECT_STREQ(e.what(), "op: weight must have shape [2, 3], got [2, 2]");
  }
  EXPECT_THROW(v.data_as<float>(), Error);
  EXPECT_THROW(v.transposed().transposed().renamed("w").data_as<int16_t>(), Error);
}

TEST(TensorView, OutputsMustNotOverlapInputsOrEachOther) {
  float data[16];
  TensorView a(data, DType::kFloat32, {2, 4}, "a"), b(data + 8, DType::kFloat32, {2, 4}, "b");
  TensorView tail(data + 7, DType::kFloat32, {1, 2}, "tail"), empty(data, DType::kFloat32, {0, 4}, "empty");
  EXPECT_NO_THROW(check_disjoint("op", {&a}, {&b}));
  EXPECT_NO_THROW(check_disjoint("op", {&empty, nullptr}, {&a, nullptr}));
  EXPECT_THROW(check_disjoint("op", {&a}, {&tail}), Error);
  EXPECT_THROW(check_disjoint("op", {&tail, &b}, {}), Error);
  try {
    check_disjoint("op", {&b}, {&a, &b});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    EXPECT_STREQ(e.what(), "op: b must not share memory with b (pass a separate output tensor)");
  }
}

TEST(TensorView, RefusesShapesWhoseElementCountOverflows) {
  float data[1];
  const int64_t shape[2] = {int64_t{1} << 40, int64_t{1} << 40}, strides[2] = {0, 0};
  EXPECT_THROW(TensorView(data, DType::kFloat32, 2, shape, strides), Error);
}

}  // namespace
}  // namespace intcore
