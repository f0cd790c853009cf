# CUDAToolkit for mlx-c builds against MLX's CUDA wheel (feature `cuda`).
#
# MLX's CMake package (MLXConfig.cmake) requires CUDAToolkit, but mlx-c uses
# no CUDA header or library: the `mlx` target it links has no CUDA interface
# (libmlx.so finds the CUDA runtime through its own rpath at run time). So a
# machine without the toolkit may still build mlx-c. Where CMake's own
# FindCUDAToolkit finds a toolkit, that result stands.
set(CUDAToolkit_FIND_REQUIRED FALSE)
set(CUDAToolkit_FIND_QUIETLY TRUE)
include(${CMAKE_ROOT}/Modules/FindCUDAToolkit.cmake)
if(NOT CUDAToolkit_FOUND)
  message(STATUS "mlx-sys: no CUDA toolkit found; mlx-c does not need one")
  set(CUDAToolkit_FOUND TRUE)
endif()
