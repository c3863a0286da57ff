// The intcore engine: everything a caller needs, in one include.
#pragma once

#include "intcore/cpu_kernel.h"
#include "intcore/embedding.h"
#include "intcore/error.h"
#include "intcore/gemm.h"
#include "intcore/hadamard.h"
#include "intcore/int4_training.h"
#include "intcore/layer_norm.h"
#include "intcore/linear.h"
#include "intcore/philox.h"
#include "intcore/quantize.h"
#include "intcore/tensor_view.h"
