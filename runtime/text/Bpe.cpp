// The byte-level BPE model: byte stand-ins, merge table and word merging.
#include "runtime/text/Bpe.h"

#include <algorithm>

namespace mt::text {
namespace {

// Byte b's stand-in code point (bytes_to_unicode).
std::array<uint32_t, 256> makeByteCodePoints() {
  std::array<uint32_t, 256> cps{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    cps[b] = printable ? b : next++;
  }
  return cps;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    // Stand-ins are below U+0800: two bytes.
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

struct ByteLevelTables {
  std::array<std::string, 256> spelling;
  std::unordered_map<uint32_t, uint8_t> byteOf; // stand-in code point -> byte
  ByteLevelTables() {
    auto cps = makeByteCodePoints();
    for (int b = 0; b < 256; ++b) {
      spelling[b] = utf8(cps[b]);
      byteOf[cps[b]] = uint8_t(b);
    }
  }
};

const ByteLevelTables &tables() {
  static const ByteLevelTables t;
  return t;
}

uint64_t hashPair(uint64_t key) {
  key *= 0x9E3779B97F4A7C15ull;
  return key ^ (key >> 29);
}

constexpr uint64_t kEmpty = ~uint64_t(0);
constexpr size_t kCacheWords = 1 << 17;
constexpr size_t kCacheMaxPieceBytes = 256;

} // namespace

std::string_view byteLevelChar(uint8_t b) { return tables().spelling[b]; }

bool byteLevelDecode(std::string_view spelling, std::string &bytes) {
  const auto &byteOf = tables().byteOf;
  for (size_t i = 0; i < spelling.size();) {
    auto c = uint8_t(spelling[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < spelling.size()) {
      cp = (uint32_t(c & 0x1F) << 6) | (uint8_t(spelling[i + 1]) & 0x3F);
      i += 2;
    } else {
      return false; // stand-ins are all one or two UTF-8 bytes
    }
    auto it = byteOf.find(cp);
    if (it == byteOf.end())
      return false;
    bytes += char(it->second);
  }
  return true;
}

Expected<std::unique_ptr<BpeModel>>
BpeModel::build(const StringIdMap &vocab,
                const std::vector<std::pair<std::string, std::string>> &merges, bool ignoreMerges,
                const std::string &where) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->ignoreMerges_ = ignoreMerges;
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(byteLevelChar(uint8_t(b)));
    if (it == vocab.end())
      return Status::error(where + ".vocab: no entry for byte " + std::to_string(b) + " ('" +
                           std::string(byteLevelChar(uint8_t(b))) +
                           "'): a byte-level BPE vocabulary has all 256");
    model->byteIds_[b] = it->second;
  }
  if (ignoreMerges) {
    std::string bytes;
    for (const auto &[spelling, id] : vocab) {
      bytes.clear();
      // Entries that are not byte-level spellings can never be a piece.
      if (byteLevelDecode(spelling, bytes))
        model->bytesToId_.emplace(bytes, id);
    }
  }
  size_t capacity = 16;
  while (capacity < merges.size() * 2)
    capacity *= 2;
  model->mergeKeys_.assign(capacity, kEmpty);
  model->mergeValues_.assign(capacity, kEmpty);
  model->mergeMask_ = capacity - 1;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto &[left, right] = merges[rank];
    auto l = vocab.find(left), r = vocab.find(right), m = vocab.find(left + right);
    std::string at = where + ".merges[" + std::to_string(rank) + "]: ";
    if (l == vocab.end())
      return Status::error(at + "'" + left + "' is not in model.vocab");
    if (r == vocab.end())
      return Status::error(at + "'" + right + "' is not in model.vocab");
    if (m == vocab.end())
      return Status::error(at + "the merged '" + left + right + "' is not in model.vocab");
    uint64_t key = uint64_t(l->second) << 32 | r->second;
    uint64_t slot = hashPair(key) & model->mergeMask_;
    while (model->mergeKeys_[slot] != kEmpty && model->mergeKeys_[slot] != key)
      slot = (slot + 1) & model->mergeMask_;
    // A repeated pair takes its later rank, as tokenizers' map built by
    // collect() over the merges in order.
    model->mergeKeys_[slot] = key;
    model->mergeValues_[slot] = uint64_t(rank) << 32 | m->second;
  }
  return model;
}

uint64_t BpeModel::findMerge(uint32_t left, uint32_t right) const {
  uint64_t key = uint64_t(left) << 32 | right;
  for (uint64_t slot = hashPair(key) & mergeMask_;; slot = (slot + 1) & mergeMask_) {
    if (mergeKeys_[slot] == key)
      return mergeValues_[slot];
    if (mergeKeys_[slot] == kEmpty)
      return kEmpty;
  }
}

void BpeModel::encodePiece(std::string_view bytes, bool useCache,
                           std::vector<uint32_t> &ids) const {
  if (bytes.size() == 1) {
    ids.push_back(byteIds_[uint8_t(bytes[0])]);
    return;
  }
  if (ignoreMerges_) {
    if (auto it = bytesToId_.find(bytes); it != bytesToId_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  useCache = useCache && bytes.size() <= kCacheMaxPieceBytes;
  if (useCache) {
    if (auto it = cache_.find(bytes); it != cache_.end()) {
      auto [offset, length] = it->second;
      ids.insert(ids.end(), cacheIds_.begin() + offset, cacheIds_.begin() + offset + length);
      return;
    }
  }
  size_t first = ids.size();
  mergeWord(bytes, ids);
  if (useCache && cache_.size() < kCacheWords) {
    cache_.emplace(std::string(bytes),
                   std::pair<uint32_t, uint32_t>(uint32_t(cacheIds_.size()),
                                                 uint32_t(ids.size() - first)));
    cacheIds_.insert(cacheIds_.end(), ids.begin() + first, ids.end());
  }
}

// tokenizers' Word::merge_all: a min-heap of candidate merges by (rank,
// position) over a doubly linked list of symbols; entries made stale by an
// earlier merge are recognized and dropped when popped.
void BpeModel::mergeWord(std::string_view bytes, std::vector<uint32_t> &ids) const {
  struct Symbol {
    uint32_t id;
    int32_t prev, next;
    bool live;
  };
  struct Candidate {
    uint32_t rank, pos, newId;
    bool operator>(const Candidate &o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  const int32_t n = int32_t(bytes.size());
  symbols.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i)
    symbols[i] = {byteIds_[uint8_t(bytes[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  auto push = [&](int32_t pos) {
    int32_t next = symbols[pos].next;
    if (next < 0)
      return;
    uint64_t m = findMerge(symbols[pos].id, symbols[next].id);
    if (m == kEmpty)
      return;
    heap.push_back({uint32_t(m >> 32), uint32_t(pos), uint32_t(m)});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (int32_t i = 0; i + 1 < n; ++i)
    push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    Candidate top = heap.back();
    heap.pop_back();
    Symbol &left = symbols[top.pos];
    if (!left.live || left.next < 0)
      continue;
    Symbol &right = symbols[left.next];
    uint64_t m = findMerge(left.id, right.id);
    if (m == kEmpty || uint32_t(m) != top.newId)
      continue; // stale: one side has merged since
    left.id = top.newId;
    right.live = false;
    left.next = right.next;
    if (right.next >= 0)
      symbols[right.next].prev = int32_t(top.pos);
    if (left.prev >= 0)
      push(left.prev);
    push(int32_t(top.pos));
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next)
    ids.push_back(symbols[i].id);
}

} // namespace mt::text
