#include "intcore/tensor_view.h"

#include <sstream>

namespace intcore {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kOther: return "a dtype intcore does not support";
  }
  return "unknown";
}

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kInt8:
    case DType::kUInt8: return 1;
    case DType::kInt16:
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kInt32:
    case DType::kFloat32: return 4;
    case DType::kInt64:
    case DType::kFloat64: return 8;
    case DType::kOther: return 1;
  }
  return 0;
}

bool is_floating(DType dtype) {
  return dtype == DType::kFloat16 || dtype == DType::kBFloat16 || dtype == DType::kFloat32 ||
         dtype == DType::kFloat64;
}

std::string device_name(Device device) {
  return device.type == DeviceType::kCPU ? "cpu" : "cuda:" + std::to_string(device.index);
}

TensorView::TensorView(void* data, DType dtype, int ndim, const int64_t* shape, const int64_t* strides,
                       Device device, std::string name)
    : data_(data), dtype_(dtype), ndim_(ndim), device_(device), name_(std::move(name)) {
  if (ndim < 0 || ndim > kMaxDims) {
    throw_value_error(name_ + " has " + std::to_string(ndim) + " dimensions; at most " +
                      std::to_string(kMaxDims) + " are supported");
  }
  int64_t running = 1;
  bool empty = false;
  for (int d = 0; d < ndim; ++d) empty = empty || shape[d] == 0;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] < 0) throw_value_error(name_ + " has a negative size");
    // numel() and every offset the kernels form must fit int64 (an expanded view can claim
    // far more elements than memory holds).
    if (!empty && shape[d] > 0 && running > (int64_t{1} << 62) / shape[d]) {
      throw_value_error(name_ + " has too many elements (more than 2^62)");
    }
    shape_[d] = shape[d];
    strides_[d] = strides ? strides[d] : running;
    running *= shape[d];
  }
}

TensorView::TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape, std::string name)
    : TensorView(data, dtype, static_cast<int>(shape.size()), shape.begin(), nullptr, Device{}, std::move(name)) {}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < ndim_; ++d) n *= shape_[d];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t expected = 1;
  for (int d = ndim_ - 1; d >= 0; --d) {
    // Strides of size-1 dimensions are irrelevant (DLPack producers set them freely).
    if (shape_[d] != 1 && strides_[d] != expected) return numel() == 0;
    expected *= shape_[d];
  }
  return true;
}

std::string TensorView::shape_str() const {
  std::ostringstream s;
  s << "[";
  for (int d = 0; d < ndim_; ++d) s << (d ? ", " : "") << shape_[d];
  s << "]";
  return s.str();
}

TensorView TensorView::transposed() const {
  if (ndim_ != 2) throw_value_error(name_ + " must be 2-D to transpose, got shape " + shape_str());
  TensorView t = *this;
  std::swap(t.shape_[0], t.shape_[1]);
  std::swap(t.strides_[0], t.strides_[1]);
  return t;
}

TensorView TensorView::renamed(std::string name) const {
  TensorView t = *this;
  t.name_ = std::move(name);
  return t;
}

void check_dtype(const std::string& fn, const TensorView& t, DType dtype) {
  if (t.dtype() != dtype) {
    throw_type_error(fn + ": " + t.name() + " must be " + dtype_name(dtype) + ", got " + dtype_name(t.dtype()));
  }
}

void check_floating(const std::string& fn, const TensorView& t) {
  if (!is_floating(t.dtype())) {
    throw_type_error(fn + ": " + t.name() + " must be a floating-point tensor, got " + dtype_name(t.dtype()));
  }
}

void check_dim(const std::string& fn, const TensorView& t, int ndim) {
  if (t.dim() != ndim) {
    throw_value_error(fn + ": " + t.name() + " must be " + std::to_string(ndim) + "-D, got shape " + t.shape_str());
  }
}

void check_scale_shape(const std::string& fn, const TensorView& t, int64_t rows) {
  if (t.dim() != 1 || (t.size(0) != 1 && t.size(0) != rows)) {
    throw_value_error(fn + ": " + t.name() + " must have shape [1] (per tensor) or [" + std::to_string(rows) +
                      "] (per row), got " + t.shape_str());
  }
}

void check_shape(const std::string& fn, const TensorView& t, std::initializer_list<int64_t> shape) {
  bool same = t.dim() == static_cast<int>(shape.size());
  int d = 0;
  for (int64_t s : shape) {
    if (!same) break;
    same = t.size(d++) == s;
  }
  if (!same) {
    TensorView expected(nullptr, t.dtype(), shape);
    throw_value_error(fn + ": " + t.name() + " must have shape " + expected.shape_str() + ", got " + t.shape_str());
  }
}

void check_contiguous(const std::string& fn, const TensorView& t) {
  if (!t.is_contiguous()) throw_value_error(fn + ": " + t.name() + " must be contiguous");
}

void check_same_device(const std::string& fn, const TensorView& a, const TensorView& b) {
  if (a.device() != b.device()) {
    throw_value_error(fn + ": " + a.name() + " is on " + device_name(a.device()) + " but " + b.name() + " is on " +
                      device_name(b.device()));
  }
}

void check_cpu(const std::string& fn, const TensorView& t) {
  if (t.device().type != DeviceType::kCPU) {
    throw_value_error(fn + ": " + t.name() + " is on " + device_name(t.device()) + "; " + fn +
                      " has no CUDA implementation yet, so its tensors must be on the CPU");
  }
}

namespace {

// The bytes [begin, end) a view can touch; begin == end for an empty view.
struct Extent {
  uintptr_t begin = 0, end = 0;
};

Extent extent_of(const TensorView& t) {
  if (t.numel() == 0 || t.data() == nullptr) return {};
  int64_t low = 0, high = 0;
  for (int d = 0; d < t.dim(); ++d) {
    const int64_t reach = (t.size(d) - 1) * t.stride(d);
    if (reach < 0) low += reach;
    else high += reach;
  }
  const int64_t size = dtype_size(t.dtype());
  const uintptr_t base = reinterpret_cast<uintptr_t>(t.data());
  return {base + static_cast<uintptr_t>(low * size), base + static_cast<uintptr_t>((high + 1) * size)};
}

bool overlap(const TensorView& a, const TensorView& b) {
  if (a.device() != b.device()) return false;
  const Extent x = extent_of(a), y = extent_of(b);
  return x.begin < x.end && y.begin < y.end && x.begin < y.end && y.begin < x.end;
}

}  // namespace

void check_disjoint(const std::string& fn, std::initializer_list<const TensorView*> outputs,
                    std::initializer_list<const TensorView*> inputs) {
  for (auto out = outputs.begin(); out != outputs.end(); ++out) {
    if (*out == nullptr) continue;
    for (auto other = outputs.begin(); other != out; ++other) {
      if (*other != nullptr && overlap(**out, **other)) {
        throw_value_error(fn + ": " + (*out)->name() + " and " + (*other)->name() +
                          " must not share memory (pass separate output tensors)");
      }
    }
    for (const TensorView* in : inputs) {
      if (in != nullptr && overlap(**out, *in)) {
        throw_value_error(fn + ": " + (*out)->name() + " must not share memory with " + in->name() +
                          " (pass a separate output tensor)");
      }
    }
  }
}

bool runs_on_cuda(const std::string& fn, std::initializer_list<const TensorView*> tensors) {
  const TensorView* first = nullptr;
  for (const TensorView* t : tensors) {
    if (t == nullptr) continue;
    if (first == nullptr) first = t;
    else check_same_device(fn, *first, *t);
  }
  if (first == nullptr || first->device().type == DeviceType::kCPU) return false;
#ifdef INTCORE_WITH_CUDA
  return true;
#else
  throw_value_error(fn + ": " + first->name() + " is on " + device_name(first->device()) +
                    " but this build of intcore has no CUDA backend (rebuild where nvcc is found, or with "
                    "-DINTCORE_CUDA=ON)");
#endif
}

}  // namespace intcore
