// TensorView: a non-owning view of a strided array (pointer, dtype, shape, strides in elements,
// device) plus the name of the argument it came from, so that engine errors can name it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "intcore/error.h"

namespace intcore {

// kOther: an array of a dtype the engine does not compute with (bool, complex, ...). Such a view
// carries no readable data: every entry point's dtype checks refuse it, in their usual order.
enum class DType : uint8_t { kInt8, kUInt8, kInt16, kInt32, kInt64, kFloat16, kBFloat16, kFloat32, kFloat64, kOther };
enum class DeviceType : uint8_t { kCPU, kCUDA };

const char* dtype_name(DType dtype);
int64_t dtype_size(DType dtype);
bool is_floating(DType dtype);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<int8_t>() { return DType::kInt8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::kUInt8; }
template <> constexpr DType dtype_of<int16_t>() { return DType::kInt16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kInt32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kInt64; }
template <> constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <> constexpr DType dtype_of<double>() { return DType::kFloat64; }

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};
std::string device_name(Device device);

class TensorView {
 public:
  static constexpr int kMaxDims = 8;

  TensorView() = default;
  // Strides are in elements. A null `strides` means contiguous row-major.
  TensorView(void* data, DType dtype, int ndim, const int64_t* shape, const int64_t* strides,
             Device device = {}, std::string name = "tensor");
  // Convenience for engine-internal and test arrays: contiguous CPU view.
  TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape, std::string name = "tensor");

  void* data() const { return data_; }
  template <typename T> T* data_as() const {
    if (dtype_ != dtype_of<T>()) {
      throw_type_error(name_ + " must be " + dtype_name(dtype_of<T>()) + ", got " + dtype_name(dtype_));
    }
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  int dim() const { return ndim_; }
  int64_t size(int d) const { return shape_[d]; }
  int64_t stride(int d) const { return strides_[d]; }
  int64_t numel() const;
  bool is_contiguous() const;
  Device device() const { return device_; }
  const std::string& name() const { return name_; }
  std::string shape_str() const;

  // The same memory seen with dimensions 0 and 1 swapped (a 2-D transpose).
  TensorView transposed() const;
  TensorView renamed(std::string name) const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kFloat32;
  int ndim_ = 0;
  int64_t shape_[kMaxDims] = {};
  int64_t strides_[kMaxDims] = {};
  Device device_ = {};
  std::string name_ = "tensor";
};

// Argument checks shared by every engine entry point. `fn` is the public function name used
// as the message prefix, e.g. "gemm_int8: a must be int8, got float32".
void check_dtype(const std::string& fn, const TensorView& t, DType dtype);
void check_floating(const std::string& fn, const TensorView& t);
void check_dim(const std::string& fn, const TensorView& t, int ndim);
void check_shape(const std::string& fn, const TensorView& t, std::initializer_list<int64_t> shape);
void check_contiguous(const std::string& fn, const TensorView& t);
// A vector of scales or exponents: shape [1] (one for the whole tensor) or [rows] (one a row).
void check_scale_shape(const std::string& fn, const TensorView& t, int64_t rows);
void check_same_device(const std::string& fn, const TensorView& a, const TensorView& b);
// For functions with no CUDA implementation yet.
void check_cpu(const std::string& fn, const TensorView& t);
// Outputs must not share memory with each other or with any input: the engine writes an
// output while it still reads its inputs. Null entries are skipped; empty views never overlap.
void check_disjoint(const std::string& fn, std::initializer_list<const TensorView*> outputs,
                    std::initializer_list<const TensorView*> inputs);
// Checks that every tensor is on one device and returns whether that device is a CUDA GPU;
// raises ValueError if it is but this build of the engine has no CUDA backend.
bool runs_on_cuda(const std::string& fn, std::initializer_list<const TensorView*> tensors);

}  // namespace intcore
