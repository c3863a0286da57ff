// Large outputs on transparent huge pages. A fresh output of many MiB is paged in by the kernel
// one 4 KiB page at a time on first write, each a fault and a clear: zeroing a fresh 47 MB
// embedding gradient took 20 ms on our 2-core VM, and 5 ms with 2 MiB pages. Linux backs a
// range with huge pages where asked (madvise MADV_HUGEPAGE; the default THP mode of most
// distributions), so the engine asks for the outputs it is about to write whole. Advice only:
// where unsupported nothing changes. (torch does the same for all its large CPU allocations
// under THP_MEM_ALLOC_ENABLE=1.) Each call splits the mapping at the advised range and takes
// the process's memory-map lock briefly; the advice stays with the memory after the tensor is
// freed, which only matters to whatever reuses it (huge pages again).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace intcore {

// Only outputs of 32 MiB and more: glibc serves those from fresh mappings every time (its
// largest mmap threshold), so every page faults. Smaller blocks are often reused from its heap,
// already paged in, and advising them backfired: a reused 16 MB int8_mm output came back as
// fresh huge pages to clear on every call (perf: page clearing inside every 2048^3 call).
constexpr size_t kHugePageAdviceBytes = size_t{32} << 20;

inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes < kHugePageAdviceBytes) return;
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data, (void)bytes;
#endif
}

}  // namespace intcore
