// The release of mtc, written into the outputs it marks as its own.
#ifndef MT_RUNTIME_SUPPORT_VERSION_H
#define MT_RUNTIME_SUPPORT_VERSION_H

namespace mt {

/// The version of this build of mtc, mtrun and mt-tokenize (one release of
/// the project: the tools are always built together).
/// MT_VERSION comes from the project() version in CMakeLists.txt (target
/// MtVersion), the same string every tool's --version prints.
inline constexpr const char *kMtcVersion = MT_VERSION;

} // namespace mt

#endif // MT_RUNTIME_SUPPORT_VERSION_H
