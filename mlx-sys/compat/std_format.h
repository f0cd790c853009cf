/*
 * std::format for C++ libraries that lack it (libstdc++ before GCC 13).
 *
 * mlx-c 0.7.0 uses std::format only to build error messages, with plain `{}`
 * placeholders (mlx/c/private/io.h). mlx-sys's build script force-includes
 * this header (`-include`) into every mlx-c source file instead of editing
 * mlx-c. Where the library has std::format this header does nothing.
 */
#ifndef MLX_SYS_COMPAT_STD_FORMAT_H
#define MLX_SYS_COMPAT_STD_FORMAT_H

#ifdef __cplusplus
#include <version>

#ifndef __cpp_lib_format
#include <sstream>
#include <string>
#include <string_view>

namespace std {

namespace mlx_sys_compat {
inline void format_rest(ostringstream& out, string_view fmt) {
  out << fmt;
}

template <class First, class... Rest>
void format_rest(
    ostringstream& out,
    string_view fmt,
    const First& first,
    const Rest&... rest) {
  size_t at = fmt.find("{}");
  if (at == string_view::npos) {
    out << fmt;
    return;
  }
  out << fmt.substr(0, at) << first;
  format_rest(out, fmt.substr(at + 2), rest...);
}
} // namespace mlx_sys_compat

/* Only `{}` placeholders are replaced, in order; that is all mlx-c uses. */
template <class... Args>
string format(string_view fmt, const Args&... args) {
  ostringstream out;
  mlx_sys_compat::format_rest(out, fmt, args...);
  return out.str();
}

} // namespace std

#endif /* __cpp_lib_format */
#endif /* __cplusplus */
#endif /* MLX_SYS_COMPAT_STD_FORMAT_H */
