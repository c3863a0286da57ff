# CUDA wiring. The CUDA backend compiles when a CUDA compiler is found (INTCORE_CUDA=AUTO) or
# is required (ON). No CUDA sources exist yet: the kernels arrive with the CUDA backend issue,
# which adds them to INTCORE_CUDA_SOURCES below.
set(INTCORE_CUDA "AUTO" CACHE STRING "Build the CUDA backend: AUTO (when nvcc is found), ON or OFF")
set_property(CACHE INTCORE_CUDA PROPERTY STRINGS AUTO ON OFF)

set(INTCORE_CUDA_SOURCES "")

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

if(INTCORE_WITH_CUDA AND INTCORE_CUDA_SOURCES)
  enable_language(CUDA)
  target_sources(intcore_engine PRIVATE ${INTCORE_CUDA_SOURCES})
  target_compile_definitions(intcore_engine PUBLIC INTCORE_WITH_CUDA=1)
endif()
message(STATUS "intcore: CUDA compiler found: ${INTCORE_WITH_CUDA}; CUDA sources: ${INTCORE_CUDA_SOURCES}")
