// FNV-1a hashing for fingerprints that must be the same on every machine.
#pragma once

#include <cstdint>

namespace mt {

/// 64-bit FNV-1a (Fowler-Noll-Vo; offset basis 0xcbf29ce484222325, prime
/// 0x100000001b3) over values added as little-endian bytes, whatever the
/// host's byte order.
class Fnv1a {
public:
  /// Hashes the low `bytes` bytes of `value` (1 to 8), least significant first.
  void add(uint64_t value, int bytes) {
    for (int b = 0; b < bytes; ++b) {
      hash_ ^= (value >> (8 * b)) & 0xff;
      hash_ *= 0x100000001b3ULL;
    }
  }
  uint64_t value() const { return hash_; }

private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

} // namespace mt
