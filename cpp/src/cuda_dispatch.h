// INTCORE_ON_CUDA(call): the call into the CUDA backend, compiled only when it is built
// (runs_on_cuda has already raised otherwise).
#pragma once

#ifdef INTCORE_WITH_CUDA
#include "../../cuda/backend.h"
#define INTCORE_ON_CUDA(call) call
#else
#define INTCORE_ON_CUDA(call) \
  do {                        \
  } while (false)
#endif
