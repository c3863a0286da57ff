// Temporary memory on the device of the tensors being worked on: host memory for the CPU,
// stream-ordered device memory for CUDA.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "intcore/tensor_view.h"
#ifdef INTCORE_WITH_CUDA
#include "../../cuda/backend.h"
#endif

namespace intcore {

class Workspace {
 public:
  Workspace(Device device, size_t bytes) : device_(device) {
#ifdef INTCORE_WITH_CUDA
    if (device.type == DeviceType::kCUDA) {
      cuda_ = std::make_unique<cuda::DeviceBuffer>(bytes);
      return;
    }
#endif
    host_.resize(bytes);
  }
  void* data() const {
#ifdef INTCORE_WITH_CUDA
    if (cuda_) return cuda_->data();
#endif
    return const_cast<unsigned char*>(host_.data());
  }
  // A contiguous view of this memory.
  TensorView view(DType dtype, std::initializer_list<int64_t> shape, const std::string& name) const {
    return TensorView(data(), dtype, static_cast<int>(shape.size()), shape.begin(), nullptr, device_, name);
  }

 private:
  Device device_;
  std::vector<unsigned char> host_;
#ifdef INTCORE_WITH_CUDA
  std::unique_ptr<cuda::DeviceBuffer> cuda_;
#endif
};

}  // namespace intcore
