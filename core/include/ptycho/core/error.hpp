#pragma once
/// Errors. One exception type and one throw macro for the whole project.
///
/// `PTYCHO_THROW_IF(cond, msg << stream << parts)` throws ptycho::Error with
/// the message and the source location (for programming errors), and
/// `PTYCHO_INPUT_ERROR_IF` throws ptycho::InputError with the message alone:
/// a user error reads `input.cxi: /entry_1/data_1/data has 3 frames but
/// translation has 5 positions`, not a stack trace.
#include <sstream>
#include <stdexcept>
#include <string>

namespace ptycho {

/// Any error ptycho raises.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An error in the user's input (file, option, value): printed without location.
class InputError : public Error {
 public:
  using Error::Error;
};

/// The reconstruction produced a value that is not finite (it diverged, or
/// the data drove it out of range): names the engine and the iteration.
class NumericalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
[[noreturn]] void throw_error(const std::string& msg, const char* file, int line);
}  // namespace detail

}  // namespace ptycho

#define PTYCHO_THROW_IF(cond, msg)                                         \
  do {                                                                     \
    if (cond) {                                                            \
      std::ostringstream ptycho_os_;                                       \
      ptycho_os_ << msg;                                                   \
      ::ptycho::detail::throw_error(ptycho_os_.str(), __FILE__, __LINE__); \
    }                                                                      \
  } while (0)

#define PTYCHO_INPUT_ERROR_IF(cond, msg)           \
  do {                                             \
    if (cond) {                                    \
      std::ostringstream ptycho_os_;               \
      ptycho_os_ << msg;                           \
      throw ::ptycho::InputError(ptycho_os_.str()); \
    }                                              \
  } while (0)

#define PTYCHO_NUMERICAL_ERROR_IF(cond, msg)           \
  do {                                                 \
    if (cond) {                                        \
      std::ostringstream ptycho_os_;                   \
      ptycho_os_ << msg;                               \
      throw ::ptycho::NumericalError(ptycho_os_.str()); \
    }                                                  \
  } while (0)
