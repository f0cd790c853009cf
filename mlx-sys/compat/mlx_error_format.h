/*
 * mlx-c hands every caught exception to `_mlx_error` as the printf format
 * (`mlx_error(e.what())`, in each of its wrappers), so a message holding a
 * `%` conversion makes vsnprintf read (`%s`) or write (`%n`) through
 * arguments that were never passed. Such messages carry user input: a
 * safetensors header fragment from a JSON parse error, a file name, a key.
 * Fuzzing the safetensors reader found the crash (a header with `%s` in it).
 *
 * mlx-sys's build script force-includes this header (`-include`) into every
 * mlx-c source file instead of editing mlx-c. It redefines the `mlx_error`
 * macro so that a lone argument is printed through "%s"; calls with a
 * format and arguments (mlx-c's own literals) are passed on unchanged.
 */
#ifndef MLX_SYS_COMPAT_MLX_ERROR_FORMAT_H
#define MLX_SYS_COMPAT_MLX_ERROR_FORMAT_H

/* CMake's compiler checks get the same flags, without mlx-c's headers. */
#if defined(__cplusplus) && __has_include("mlx/c/error.h")
#include "mlx/c/error.h"

namespace mlx_sys_compat {
inline void error_message(const char* file, int line, const char* message) {
  _mlx_error(file, line, "%s", message);
}

template <class... Args>
inline void error_message(
    const char* file,
    int line,
    const char* format,
    Args... args) {
  _mlx_error(file, line, format, args...);
}
} // namespace mlx_sys_compat

#undef mlx_error
#define mlx_error(...) \
  ::mlx_sys_compat::error_message(__FILE__, __LINE__, __VA_ARGS__)
#endif

#endif
