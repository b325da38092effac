// The release of mtc, written into the outputs it marks as its own.
#ifndef MT_RUNTIME_SUPPORT_VERSION_H
#define MT_RUNTIME_SUPPORT_VERSION_H

namespace mt {

/// The version of this build of mtc, mtrun and mt-tokenize (one release of
/// the project: the tools are always built together).
inline constexpr const char *kMtcVersion = "0.1.0";

} // namespace mt

#endif // MT_RUNTIME_SUPPORT_VERSION_H
