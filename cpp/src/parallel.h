// Thin OpenMP helpers. Small problems run on the calling thread: waking the pool costs more
// than it saves below about a million operations.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace intcore {

constexpr int64_t kParallelGrain = 1 << 20;

// fn(begin, end) over [0, n) split into contiguous chunks, one per thread.
template <class Fn>
void parallel_for(int64_t n, int64_t cost_per_item, Fn&& fn) {
  if (n <= 0) return;
#ifdef _OPENMP
  if (n > 1 && n * cost_per_item >= kParallelGrain && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads();
      const int64_t id = omp_get_thread_num();
      const int64_t chunk = (n + threads - 1) / threads;
      const int64_t begin = id * chunk;
      const int64_t end = begin + chunk < n ? begin + chunk : n;
      if (begin < end) fn(begin, end);
    }
    return;
  }
#endif
  fn(0, n);
}

}  // namespace intcore
