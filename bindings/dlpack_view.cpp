#include "dlpack_view.h"

#include <cstdint>

namespace py = pybind11;

namespace intcore::bindings {

thread_local const char* BindingCall::current_ = nullptr;

// The DLPack ABI (dmlc/dlpack, v0.8 "legacy" capsule layout), declared from its specification.
struct DLDevice {
  int32_t device_type;  // 1 CPU, 2 CUDA, 3 CUDA pinned host memory
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // 0 int, 1 uint, 2 float, 4 bfloat
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

namespace {

// The engine's dtype of a DLPack dtype; kOther for the rest, which the engine's own dtype checks
// then refuse naming the argument (so that every check keeps its order).
DType to_dtype(const DLDataType& t) {
  if (t.lanes == 1) {
    switch (t.code) {
      case 0:
        if (t.bits == 8) return DType::kInt8;
        if (t.bits == 16) return DType::kInt16;
        if (t.bits == 32) return DType::kInt32;
        if (t.bits == 64) return DType::kInt64;
        break;
      case 1:
        if (t.bits == 8) return DType::kUInt8;
        break;
      case 2:
        if (t.bits == 16) return DType::kFloat16;
        if (t.bits == 32) return DType::kFloat32;
        if (t.bits == 64) return DType::kFloat64;
        break;
      case 4:
        if (t.bits == 16) return DType::kBFloat16;
        break;
    }
  }
  return DType::kOther;
}

Device to_device(const DLDevice& d, const std::string& name) {
  switch (d.device_type) {
    case 1:
    case 3: return Device{DeviceType::kCPU, 0};
    case 2: return Device{DeviceType::kCUDA, d.device_id};
  }
  throw Error(ErrorKind::kValue, BindingCall::prefix() + name + " is on a device intcore does not support (DLPack device type " +
                                     std::to_string(d.device_type) + ")");
}

// A CPU torch.Tensor (that very type) is exported with torch._C._to_dlpack after the checks
// Tensor.__dlpack__ makes on the CPU, without its Python wrapper and __dlpack_device__: about
// 1 us per argument instead of 6, which ops with a dozen tensor arguments pay on every call.
// Other arrays, tensors that fail a check, and every tensor while a TorchFunctionMode is
// active (which __dlpack__ would consult) take the general path below, which raises what
// __dlpack__ raises.
struct TorchExport {
  py::object tensor;  // torch.Tensor, held so that tensor_type stays valid
  PyTypeObject* tensor_type = nullptr;
  py::object to_dlpack, strided, function_mode_enabled;
  py::str requires_grad{"requires_grad"}, is_cpu{"is_cpu"}, is_conj{"is_conj"}, layout{"layout"};
};

// Set up on the first call that finds torch imported. torch is looked up in sys.modules, never
// imported here (an import may release the GIL midway), and a module still being imported is
// tried again on the next call. A plain static guarded by the GIL (a function-local static's
// initialization lock could deadlock against it); never freed, as it would outlive the
// interpreter.
const TorchExport* torch_export() {
  static const TorchExport* cached = nullptr;
  if (cached != nullptr) return cached;
  PyObject* module = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");  // borrowed
  if (module == nullptr) return nullptr;
  const py::handle torch(module);
  if (!py::hasattr(torch, "Tensor") || !py::hasattr(torch, "strided") || !py::hasattr(torch, "_C")) return nullptr;
  const py::object c = torch.attr("_C");
  if (!py::hasattr(c, "_to_dlpack") || !py::hasattr(c, "_is_torch_function_mode_enabled")) return nullptr;
  auto* t = new TorchExport;
  t->tensor = torch.attr("Tensor");
  t->tensor_type = reinterpret_cast<PyTypeObject*>(t->tensor.ptr());
  t->to_dlpack = c.attr("_to_dlpack");
  t->strided = torch.attr("strided");
  t->function_mode_enabled = c.attr("_is_torch_function_mode_enabled");
  cached = t;
  return cached;
}

// The capsule of a CPU torch.Tensor that __dlpack__ would export as is; null for anything else.
py::object torch_capsule(const py::handle& array) {
  const TorchExport* t = torch_export();
  if (t == nullptr || Py_TYPE(array.ptr()) != t->tensor_type) return py::object();
  if (!array.attr(t->is_cpu).cast<bool>() || array.attr(t->requires_grad).cast<bool>() ||
      array.attr(t->is_conj)().cast<bool>() || py::object(array.attr(t->layout)).ptr() != t->strided.ptr() ||
      t->function_mode_enabled().cast<bool>()) {
    return py::object();
  }
  return t->to_dlpack(array);
}

}  // namespace

DLPackView::DLPackView(const py::handle& array, const std::string& name) {
  if (!py::hasattr(array, "__dlpack__")) {
    throw Error(ErrorKind::kType, BindingCall::prefix() + name + " must be an array that supports DLPack (torch.Tensor, numpy.ndarray), got " +
                                      std::string(py::str(py::type::of(array).attr("__name__"))));
  }
  // CUDA producers synchronize their current stream with the consumer's stream unless told
  // otherwise; the engine runs on PyTorch's current stream already, so ask for none (-1).
  // The producer refuses some arrays (BufferError for a torch tensor that requires grad, a
  // sparse or conjugated one; ValueError for a meta tensor, ...): a wrong argument, a TypeError
  // naming it.
  bool on_cuda = false;
  py::object capsule;
  try {
    capsule = torch_capsule(array);  // the fast path for CPU tensors; null where it does not apply
    if (!capsule) {
      if (py::hasattr(array, "__dlpack_device__")) {
        const py::tuple device = array.attr("__dlpack_device__")();
        on_cuda = device.size() > 0 && device[0].cast<int>() == 2;
      }
      capsule = on_cuda ? array.attr("__dlpack__")(py::arg("stream") = -1) : array.attr("__dlpack__")();
    }
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_Exception)) throw;  // KeyboardInterrupt and the like pass through
    throw Error(ErrorKind::kType, BindingCall::prefix() + name + " cannot be read through DLPack (" +
                                      std::string(py::str(e.value())) + ")");
  }
  PyObject* raw = capsule.ptr();
  managed_ = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(raw, "dltensor"));
  if (managed_ == nullptr) throw py::error_already_set();
  // Renaming marks the capsule consumed: from here on we own managed_ and must call its deleter.
  if (PyCapsule_SetName(raw, "used_dltensor") != 0) throw py::error_already_set();
  try {
    const DLTensor& t = managed_->dl_tensor;
    const DType dtype = to_dtype(t.dtype);
    const Device device = to_device(t.device, name);
    void* data = static_cast<char*>(t.data) + t.byte_offset;
    view_ = TensorView(data, dtype, t.ndim, t.shape, t.strides, device, name);
  } catch (...) {
    if (managed_->deleter) managed_->deleter(managed_);
    managed_ = nullptr;
    throw;
  }
}

DLPackView::~DLPackView() {
  if (managed_ != nullptr && managed_->deleter != nullptr) managed_->deleter(managed_);
}

}  // namespace intcore::bindings
