// Arrays cross into the engine through DLPack: any object with __dlpack__ (torch.Tensor,
// numpy.ndarray, ...). DLPackView consumes the exported capsule, checks what the engine cannot
// know (a supported dtype and device), and presents it as a TensorView named after the Python
// argument. The producer's memory stays alive until the view is destroyed.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "intcore/tensor_view.h"

namespace intcore::bindings {

struct DLManagedTensor;  // the DLPack ABI struct, declared in dlpack_view.cpp

// The intcore._C function being called on this thread, which the errors raised while its
// arguments are read name ("dequantize_absmax: out must be ..."). Each binding opens one.
class BindingCall {
 public:
  explicit BindingCall(const char* fn) : previous_(current_) { current_ = fn; }
  ~BindingCall() { current_ = previous_; }
  BindingCall(const BindingCall&) = delete;
  BindingCall& operator=(const BindingCall&) = delete;
  // "fn: " for the current call ("" outside one).
  static std::string prefix() { return current_ ? std::string(current_) + ": " : std::string(); }

 private:
  const char* previous_;
  static thread_local const char* current_;
};

class DLPackView {
 public:
  DLPackView(const pybind11::handle& array, const std::string& name);
  ~DLPackView();
  DLPackView(const DLPackView&) = delete;
  DLPackView& operator=(const DLPackView&) = delete;

  const TensorView& view() const { return view_; }

 private:
  DLManagedTensor* managed_ = nullptr;
  TensorView view_;
};

}  // namespace intcore::bindings
