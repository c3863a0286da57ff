# The CUDA backend. INTCORE_CUDA=AUTO builds it when a CUDA compiler is found, ON requires it,
# OFF skips it. The CUDA runtime is linked statically, so `import intcore` works on machines
# without a GPU or driver (intcore.cuda_available() then says why the kernels cannot run).
#
# CUTLASS headers: CUTLASS_DIR (a CUTLASS checkout or install with include/ and
# tools/util/include/), else the pinned nvidia-cutlass wheel, taken from
# INTCORE_CUTLASS_WHEEL (a local file, for machines without network) or downloaded from PyPI
# and checked against its sha256.
set(INTCORE_CUDA "AUTO" CACHE STRING "Build the CUDA backend: AUTO (when nvcc is found), ON or OFF")
set_property(CACHE INTCORE_CUDA PROPERTY STRINGS AUTO ON OFF)
set(CUTLASS_DIR "" CACHE PATH "CUTLASS source tree (include/, tools/util/include/); empty: the pinned wheel")
set(INTCORE_CUTLASS_WHEEL "" CACHE FILEPATH "A local nvidia_cutlass-4.2.0.0 wheel (empty: download it)")

set(INTCORE_WITH_CUDA OFF)
if(INTCORE_CUDA STREQUAL "ON" OR INTCORE_CUDA STREQUAL "AUTO")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(INTCORE_WITH_CUDA ON)
  elseif(INTCORE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "INTCORE_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
endif()

if(INTCORE_WITH_CUDA)
  # Ampere, Ada and Hopper. "90a" enables wgmma and TMA for the Hopper GEMM.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "52")
    set(CMAKE_CUDA_ARCHITECTURES "80;86;89;90a")
  endif()
  set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)

  set(INTCORE_CUTLASS_VERSION "4.2.0.0")
  set(INTCORE_CUTLASS_SHA256 "f9599ada45c7bcb6bf53f7d3f0a7d154183e53451c01bfa59eecd37dd4a693f6")
  if(CUTLASS_DIR)
    set(INTCORE_CUTLASS_INCLUDE "${CUTLASS_DIR}/include" "${CUTLASS_DIR}/tools/util/include")
  else()
    set(_wheel_dir "${CMAKE_BINARY_DIR}/_deps/cutlass")
    set(_wheel "${_wheel_dir}/nvidia_cutlass-${INTCORE_CUTLASS_VERSION}-py3-none-any.whl")
    if(INTCORE_CUTLASS_WHEEL)
      set(_wheel "${INTCORE_CUTLASS_WHEEL}")
    elseif(NOT EXISTS "${_wheel}")
      message(STATUS "intcore: downloading nvidia-cutlass ${INTCORE_CUTLASS_VERSION} (CUTLASS headers)")
      file(DOWNLOAD
        "https://files.pythonhosted.org/packages/21/6b/e86fc2fd536dd4b8bd2209aa31d7002610c501b0802337787eac9c9b328c/nvidia_cutlass-${INTCORE_CUTLASS_VERSION}-py3-none-any.whl"
        "${_wheel}" EXPECTED_HASH SHA256=${INTCORE_CUTLASS_SHA256} STATUS _status)
      list(GET _status 0 _code)
      if(NOT _code EQUAL 0)
        message(FATAL_ERROR "intcore: could not download the CUTLASS wheel (${_status}); set CUTLASS_DIR or "
                            "INTCORE_CUTLASS_WHEEL, or configure with -DINTCORE_CUDA=OFF")
      endif()
    endif()
    file(SHA256 "${_wheel}" _actual)
    if(NOT _actual STREQUAL INTCORE_CUTLASS_SHA256)
      message(FATAL_ERROR "intcore: ${_wheel} has sha256 ${_actual}, expected ${INTCORE_CUTLASS_SHA256}")
    endif()
    if(NOT EXISTS "${_wheel_dir}/extracted/cutlass_library/source/include/cutlass/cutlass.h")
      file(ARCHIVE_EXTRACT INPUT "${_wheel}" DESTINATION "${_wheel_dir}/extracted"
           PATTERNS "cutlass_library/source/include/*" "cutlass_library/source/tools/util/include/*")
    endif()
    set(INTCORE_CUTLASS_INCLUDE "${_wheel_dir}/extracted/cutlass_library/source/include"
                                "${_wheel_dir}/extracted/cutlass_library/source/tools/util/include")
  endif()

  # -DNDEBUG: without it ptxas serializes wgmma (C7510). --fmad=false: no contraction, so the
  # quantizers and epilogues round exactly like the CPU engine.
  set(_cuda_flags -O3 -DNDEBUG --expt-relaxed-constexpr --fmad=false -Xcudafe --diag_suppress=177)

  add_library(intcore_cuda STATIC
    cuda/gemm.cu
    cuda/gemm_int8_sm80.cu
    cuda/quantize.cu
    cuda/runtime.cu
  )
  target_include_directories(intcore_cuda PRIVATE cpp/include ${INTCORE_CUTLASS_INCLUDE})
  target_compile_options(intcore_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${_cuda_flags}>)
  target_compile_features(intcore_cuda PRIVATE cxx_std_17 cuda_std_17)
  set_target_properties(intcore_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)
  target_link_libraries(intcore_cuda PUBLIC CUDA::cudart_static)

  # The Hopper GEMM compiles for sm_90a alone (wgmma and TMA exist nowhere else).
  if("90a" IN_LIST CMAKE_CUDA_ARCHITECTURES)
    add_library(intcore_cuda_sm90 STATIC cuda/gemm_int8_sm90.cu)
    target_include_directories(intcore_cuda_sm90 PRIVATE cpp/include ${INTCORE_CUTLASS_INCLUDE})
    target_compile_options(intcore_cuda_sm90 PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${_cuda_flags}>)
    target_compile_features(intcore_cuda_sm90 PRIVATE cxx_std_17 cuda_std_17)
    set_target_properties(intcore_cuda_sm90 PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_ARCHITECTURES "90a")
    target_link_libraries(intcore_cuda_sm90 PUBLIC CUDA::cudart_static)
    target_compile_definitions(intcore_cuda PRIVATE INTCORE_WITH_SM90=1)
    target_link_libraries(intcore_cuda PUBLIC intcore_cuda_sm90)
  endif()

  target_link_libraries(intcore_engine PUBLIC intcore_cuda)
  target_compile_definitions(intcore_engine PUBLIC INTCORE_WITH_CUDA=1)
endif()
message(STATUS "intcore: CUDA backend: ${INTCORE_WITH_CUDA} (architectures: ${CMAKE_CUDA_ARCHITECTURES})")
