// Helpers shared by the engine tests: owned arrays, seeded random fills, the naive int64
// reference GEMM, and running a test body once per CPU kernel the machine supports.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "intcore/intcore.h"

namespace intcore::test {

template <typename T>
struct Array {
  std::vector<T> data;
  int64_t rows, cols;
  Array(int64_t r, int64_t c, T fill = T{}) : data(static_cast<size_t>(r * c), fill), rows(r), cols(c) {}
  T& operator()(int64_t r, int64_t c) { return data[r * cols + c]; }
  T operator()(int64_t r, int64_t c) const { return data[r * cols + c]; }
  TensorView view(const std::string& name = "tensor") {
    return TensorView(data.data(), dtype_of<T>(), {rows, cols}, name);
  }
};

template <typename T>
Array<T> random_ints(int64_t rows, int64_t cols, int lo, int hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  Array<T> a(rows, cols);
  for (auto& v : a.data) v = static_cast<T>(dist(gen));
  return a;
}

inline Array<float> random_floats(int64_t rows, int64_t cols, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Array<float> a(rows, cols);
  for (auto& v : a.data) v = dist(gen);
  return a;
}

// Naive C = A B^T in int64; `at(m, r, k)` reads element (r, k) of an operand.
template <class A, class B>
Array<int64_t> reference_gemm(int64_t m, int64_t n, int64_t k, A&& a_at, B&& b_at) {
  Array<int64_t> c(m, n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = 0;
      for (int64_t t = 0; t < k; ++t) s += static_cast<int64_t>(a_at(i, t)) * static_cast<int64_t>(b_at(j, t));
      c(i, j) = s;
    }
  return c;
}

// Runs body once with each CPU kernel this machine supports, restoring the original after.
inline void for_each_cpu_kernel(const std::function<void(CpuKernel)>& body) {
  const CpuKernel original = active_cpu_kernel();
  for (CpuKernel k : supported_cpu_kernels()) {
    set_cpu_kernel(k);
    SCOPED_TRACE(cpu_kernel_name(k));
    body(k);
  }
  set_cpu_kernel(original);
}

}  // namespace intcore::test
