// cuDNN fused flash attention through the backend graph API: the forward
// and backward operation graphs that cuDNN's fused SDPA engines recognize
// (the node order cudnn-frontend's CompositeSDPANode and
// CompositeSDPABackwardNode lower to: matmul, scale, causal mask by
// generated indices, softmax with stats, matmul), built once per shape.
// The deterministic backward is the "dP workspace" form, dQ written by its
// own matmul; the other accumulates dQ in fp32 with atomics.
#include "runtime/cuda/CudnnAttention.h"

#include "runtime/cuda/Check.h"
#include "runtime/plan/AttentionWorkspace.h"

#include <cudnn.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace mt::cuda {

namespace {

using Desc = cudnnBackendDescriptor_t;

/// Records the first failing cuDNN call of a graph build with its status and
/// cuDNN's own message; every later call is skipped.
class Builder {
public:
  explicit Builder(cudnnHandle_t handle) : handle_(handle) {}
  ~Builder() {
    for (Desc d : owned_)
      (void)cudnnBackendDestroyDescriptor(d);
  }
  Builder(const Builder &) = delete;
  Builder &operator=(const Builder &) = delete;

  const Status &status() const { return status_; }
  bool ok() const { return status_.isOk(); }
  void check(cudnnStatus_t s, const std::string &what) {
    if (s == CUDNN_STATUS_SUCCESS || !ok())
      return;
    char detail[512] = {};
    cudnnGetLastErrorString(detail, sizeof detail);
    status_ = Status::error(errorContext() + "cuDNN attention: " + what + ": " +
                            cudnnGetErrorString(s) + (*detail ? std::string(" (") + detail + ")" : ""));
  }

  Desc make(cudnnBackendDescriptorType_t type, const char *what) {
    Desc d = nullptr;
    if (!ok())
      return nullptr;
    check(cudnnBackendCreateDescriptor(type, &d), std::string("create ") + what);
    if (d)
      owned_.push_back(d);
    return d;
  }
  /// Hands a descriptor over to the caller (not destroyed with the builder).
  Desc release(Desc d) {
    std::erase(owned_, d);
    return d;
  }
  template <typename T>
  void set(Desc d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
           int64_t count, const T *values, const char *what) {
    if (ok())
      check(cudnnBackendSetAttribute(d, name, type, count, values), std::string("set ") + what);
  }
  void finalize(Desc d, const char *what) {
    if (ok())
      check(cudnnBackendFinalize(d), std::string("finalize ") + what);
  }

  /// A tensor of `dims` (4-d) with `strides`; uid 0 makes a virtual one.
  Desc tensor(const std::vector<int64_t> &dims, const std::vector<int64_t> &strides,
              cudnnDataType_t type, int64_t uid = 0, bool byValue = false) {
    Desc t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor");
    const int64_t id = uid ? uid : nextVirtualUid_++;
    const int64_t alignment = 16;
    const bool isVirtual = uid == 0;
    set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor type");
    set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, int64_t(dims.size()), dims.data(),
        "tensor dims");
    set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, int64_t(strides.size()),
        strides.data(), "tensor strides");
    set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &id, "tensor uid");
    set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, "tensor alignment");
    if (isVirtual)
      set(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &isVirtual, "tensor virtual");
    if (byValue)
      set(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byValue, "tensor by value");
    finalize(t, "tensor");
    return t;
  }
  /// A virtual tensor like [b, h, rows, cols] row-major.
  Desc scores(int64_t b, int64_t h, int64_t rows, int64_t cols,
              cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    return tensor({b, h, rows, cols}, {h * rows * cols, rows * cols, cols, 1}, type);
  }
  /// A host scalar passed by value (uid given: it is in the variant pack).
  Desc scalar(int64_t uid) {
    return tensor({1, 1, 1, 1}, {1, 1, 1, 1}, CUDNN_DATA_FLOAT, uid, true);
  }

  /// y = mode(x[, b[, t]]); the math precision is fp32 but for comparisons.
  void pointwise(cudnnPointwiseMode_t mode, Desc x, Desc b, Desc t, Desc y, int64_t axis = -1) {
    Desc pw = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "pointwise");
    const cudnnDataType_t prec = mode == CUDNN_POINTWISE_CMP_GE ? CUDNN_DATA_BOOLEAN
                                                                 : CUDNN_DATA_FLOAT;
    set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
    set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, "pointwise prec");
    if (mode == CUDNN_POINTWISE_GEN_INDEX)
      set(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, "pointwise axis");
    finalize(pw, "pointwise");
    Desc op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "pointwise op");
    const float one = 1.0f;
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw,
        "pointwise desc");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "x");
    if (b)
      set(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, "b");
    if (t)
      set(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t, "t");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "y");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one, "alpha1");
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one, "alpha2");
    finalize(op, "pointwise op");
    ops_.push_back(op);
  }
  void matmul(Desc a, Desc b, Desc c) {
    Desc mm = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR, "matmul");
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "matmul comp type");
    finalize(mm, "matmul");
    Desc op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "matmul op");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a, "matmul a");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, "matmul b");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c, "matmul c");
    set(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm,
        "matmul desc");
    finalize(op, "matmul op");
    ops_.push_back(op);
  }
  void reduction(cudnnReduceTensorOp_t mode, Desc x, Desc y) {
    Desc red = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "reduction");
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    set(red, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode,
        "reduction operator");
    set(red, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "reduction comp");
    finalize(red, "reduction");
    Desc op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "reduction op");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "x");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "y");
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &red,
        "reduction desc");
    finalize(op, "reduction op");
    ops_.push_back(op);
  }
  void reshape(Desc x, Desc y) {
    Desc op = make(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape op");
    set(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "x");
    set(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "y");
    finalize(op, "reshape op");
    ops_.push_back(op);
  }

  /// The causal mask: scores where row >= col, -inf elsewhere.
  Desc causalMask(Desc x, Desc negInf, int64_t b, int64_t h, int64_t s) {
    Desc row = scores(b, h, s, s, CUDNN_DATA_INT32), col = scores(b, h, s, s, CUDNN_DATA_INT32);
    Desc keep = scores(b, h, s, s, CUDNN_DATA_BOOLEAN), y = scores(b, h, s, s);
    pointwise(CUDNN_POINTWISE_GEN_INDEX, x, nullptr, nullptr, row, 2);
    pointwise(CUDNN_POINTWISE_GEN_INDEX, x, nullptr, nullptr, col, 3);
    pointwise(CUDNN_POINTWISE_CMP_GE, row, col, nullptr, keep);
    pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, negInf, keep, y);
    return y;
  }

  /// The operation graph of the ops added so far, and its fastest plan
  /// (heuristics mode A, then B; deterministic engines only when asked);
  /// its workspace bytes.
  Desc plan(bool deterministicOnly, int64_t &workspaceBytes);

private:
  cudnnHandle_t handle_;
  Status status_ = Status::ok();
  std::vector<Desc> owned_;
  std::vector<Desc> ops_;
  int64_t nextVirtualUid_ = 1000;
};

bool deterministic(Builder &bld, Desc config) {
  Desc engine = bld.make(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine");
  int64_t n = 0;
  if (!bld.ok())
    return false;
  bld.check(cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &engine),
            "get engine");
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  n = 0;
  bld.check(cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                     CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                     &n, notes),
            "get numerical notes");
  for (int64_t i = 0; i < n; ++i)
    if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC)
      return false;
  return bld.ok();
}

Desc Builder::plan(bool deterministicOnly, int64_t &workspaceBytes) {
  Desc graph = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
  set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops_.size()),
      ops_.data(), "graph ops");
  set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_, "graph handle");
  finalize(graph, "operation graph");
  std::string tried;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_B}) {
    Desc heur = make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
    set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph,
        "heuristics graph");
    set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
    finalize(heur, "heuristics");
    int64_t count = 0;
    if (ok())
      check(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
            "count heuristics results");
    std::vector<Desc> configs;
    for (int64_t i = 0; i < count && ok(); ++i)
      configs.push_back(make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config"));
    if (ok() && count > 0)
      check(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count,
                                     configs.data()),
            "get heuristics results");
    // Results come fastest first: the first deterministic one that builds.
    for (int64_t i = 0; i < count && ok(); ++i) {
      if (deterministicOnly && !deterministic(*this, configs[size_t(i)])) {
        tried += " nondeterministic";
        continue;
      }
      Desc p = make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "execution plan");
      set(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_, "plan handle");
      set(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
          &configs[size_t(i)], "plan config");
      if (!ok())
        return nullptr;
      const cudnnStatus_t built = cudnnBackendFinalize(p);
      if (built != CUDNN_STATUS_SUCCESS) {
        tried += std::string(" ") + cudnnGetErrorString(built);
        continue;
      }
      int64_t n = 0;
      check(cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                     CUDNN_TYPE_INT64, 1, &n, &workspaceBytes),
            "get plan workspace");
      return ok() ? release(p) : nullptr;
    }
  }
  if (ok())
    status_ = Status::error(errorContext() + "cuDNN attention: no engine" +
                            (deterministicOnly ? " without the nondeterministic note" : "") +
                            " builds a plan for this graph (engine configs tried:" +
                            (tried.empty() ? std::string(" none") : tried) + ")");
  return nullptr;
}

// Unique ids of the tensors the caller passes (the variant pack).
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDo, kDq, kDk, kDv, kScale, kNegInf, kOne,
                     kSoftmaxSum, kDqAccum };

/// The [b, h, s, d] view of a [batch, seq, heads, headDim] tensor, and its
/// transpose [b, h, d, s].
struct Bshd {
  std::vector<int64_t> dims, strides, dimsT, stridesT;
  Bshd(int64_t b, int64_t s, int64_t h, int64_t d)
      : dims{b, h, s, d}, strides{s * h * d, d, h * d, 1}, dimsT{b, h, d, s},
        stridesT{s * h * d, d, 1, h * d} {}
};

Desc buildForward(Builder &g, const AttentionShape &sh, int64_t &workspace) {
  const int64_t b = sh.batch, s = sh.seq, h = sh.heads, hk = sh.kvHeads, d = sh.headDim;
  const Bshd qv(b, s, h, d), kv(b, s, hk, d);
  Desc q = g.tensor(qv.dims, qv.strides, CUDNN_DATA_BFLOAT16, kQ);
  Desc kT = g.tensor(kv.dimsT, kv.stridesT, CUDNN_DATA_BFLOAT16, kK);
  Desc v = g.tensor(kv.dims, kv.strides, CUDNN_DATA_BFLOAT16, kV);
  Desc o = g.tensor(qv.dims, qv.strides, CUDNN_DATA_BFLOAT16, kO);
  Desc stats = g.tensor({b, h, s, 1}, {h * s, s, 1, 1}, CUDNN_DATA_FLOAT, kStats);
  Desc scale = g.scalar(kScale), negInf = g.scalar(kNegInf);

  Desc qk = g.scores(b, h, s, s);
  g.matmul(q, kT, qk);
  Desc scaled = g.scores(b, h, s, s);
  g.pointwise(CUDNN_POINTWISE_MUL, qk, scale, nullptr, scaled);
  Desc masked = g.causalMask(scaled, negInf, b, h, s);
  // Softmax with its stats: max + log(sum(exp(x - max))).
  Desc max = g.scores(b, h, s, 1), centred = g.scores(b, h, s, s), e = g.scores(b, h, s, s);
  Desc sum = g.scores(b, h, s, 1), logSum = g.scores(b, h, s, 1);
  Desc p = g.scores(b, h, s, s, CUDNN_DATA_BFLOAT16);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, max);
  g.pointwise(CUDNN_POINTWISE_SUB, masked, max, nullptr, centred);
  g.pointwise(CUDNN_POINTWISE_EXP, centred, nullptr, nullptr, e);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, sum);
  g.pointwise(CUDNN_POINTWISE_LOG, sum, nullptr, nullptr, logSum);
  g.pointwise(CUDNN_POINTWISE_ADD, max, logSum, nullptr, stats);
  g.pointwise(CUDNN_POINTWISE_DIV, e, sum, nullptr, p);
  g.matmul(p, v, o);
  return g.plan(true, workspace);
}

/// dK or dV of a kv head: transposed scores times a [b, h, s, d] operand,
/// summed over the query heads of its group (GQA) by a reduction.
void keyGradient(Builder &g, Desc scoresT, Desc operand, Desc grad, const AttentionShape &sh) {
  if (sh.heads == sh.kvHeads) {
    g.matmul(scoresT, operand, grad);
    return;
  }
  const int64_t b = sh.batch, s = sh.seq, h = sh.heads, d = sh.headDim;
  Desc full = g.tensor({b, h, s, d}, {h * s * d, s * d, d, 1}, CUDNN_DATA_BFLOAT16);
  g.matmul(scoresT, operand, full);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, full, grad);
}

Desc buildBackward(Builder &g, const AttentionShape &sh, bool deterministic,
                   int64_t &workspace) {
  const int64_t b = sh.batch, s = sh.seq, h = sh.heads, hk = sh.kvHeads, d = sh.headDim;
  const Bshd qv(b, s, h, d), kv(b, s, hk, d);
  auto bf16Tensor = [&](const std::vector<int64_t> &dims, const std::vector<int64_t> &strides,
                        int64_t uid) { return g.tensor(dims, strides, CUDNN_DATA_BFLOAT16, uid); };
  Desc q = bf16Tensor(qv.dims, qv.strides, kQ), kT = bf16Tensor(kv.dimsT, kv.stridesT, kK);
  Desc vT = bf16Tensor(kv.dimsT, kv.stridesT, kV), o = bf16Tensor(qv.dims, qv.strides, kO);
  Desc dO = bf16Tensor(qv.dims, qv.strides, kDo), dQ = bf16Tensor(qv.dims, qv.strides, kDq);
  Desc dK = bf16Tensor(kv.dims, kv.strides, kDk), dV = bf16Tensor(kv.dims, kv.strides, kDv);
  Desc stats = g.tensor({b, h, s, 1}, {h * s, s, 1, 1}, CUDNN_DATA_FLOAT, kStats);
  Desc softmaxSum = g.tensor({b, h, s, 1}, {h * s, s, 1, 1}, CUDNN_DATA_FLOAT, kSoftmaxSum);
  Desc scale = g.scalar(kScale), negInf = g.scalar(kNegInf), one = g.scalar(kOne);

  // rowsum(dO * O), the softmax backward's per-query term.
  Desc dOO = g.tensor(qv.dims, qv.strides, CUDNN_DATA_FLOAT);
  Desc rowSum = g.scores(b, h, s, 1);
  g.pointwise(CUDNN_POINTWISE_MUL, dO, o, nullptr, dOO);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, dOO, rowSum);
  g.pointwise(CUDNN_POINTWISE_MUL, rowSum, one, nullptr, softmaxSum);
  // P = exp(scale * Q K^T - stats), causal.
  Desc qk = g.scores(b, h, s, s), scaled = g.scores(b, h, s, s), centred = g.scores(b, h, s, s);
  g.matmul(q, kT, qk);
  g.pointwise(CUDNN_POINTWISE_MUL, qk, scale, nullptr, scaled);
  g.pointwise(CUDNN_POINTWISE_SUB, scaled, stats, nullptr, centred);
  Desc masked = g.causalMask(centred, negInf, b, h, s);
  Desc p = g.scores(b, h, s, s);
  g.pointwise(CUDNN_POINTWISE_EXP, masked, nullptr, nullptr, p);
  const std::vector<int64_t> dimsT{b, h, s, s}, stridesT{h * s * s, s * s, 1, s};
  Desc pT = g.tensor(dimsT, stridesT, CUDNN_DATA_BFLOAT16);
  g.reshape(p, pT);
  keyGradient(g, pT, dO, dV, sh);
  // dS = scale * P * (dO V^T - rowsum(dO * O)).
  Desc dP = g.scores(b, h, s, s), dPc = g.scores(b, h, s, s), dS = g.scores(b, h, s, s);
  Desc dSs = g.scores(b, h, s, s);
  g.matmul(dO, vT, dP);
  g.pointwise(CUDNN_POINTWISE_SUB, dP, softmaxSum, nullptr, dPc);
  g.pointwise(CUDNN_POINTWISE_MUL, dPc, p, nullptr, dS);
  g.pointwise(CUDNN_POINTWISE_MUL, dS, scale, nullptr, dSs);
  Desc dST = g.tensor(dimsT, stridesT, CUDNN_DATA_BFLOAT16);
  g.reshape(dSs, dST);
  keyGradient(g, dST, q, dK, sh);
  Desc k = g.tensor(kv.dims, kv.strides, CUDNN_DATA_BFLOAT16);
  g.reshape(kT, k);
  if (deterministic) {
    g.matmul(dSs, k, dQ);
  } else {
    Desc dQAccum = g.tensor({b, h, s, d}, {h * s * d, s * d, d, 1}, CUDNN_DATA_FLOAT, kDqAccum);
    g.matmul(dSs, k, dQAccum);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, dQAccum, nullptr, nullptr, dQ);
  }
  return g.plan(deterministic, workspace);
}

/// Bytes of the backward's fp32 rowsum, placed first in the workspace, and
/// of its fp32 dQ accumulator (the nondeterministic form), placed next.
size_t softmaxSumBytes(const AttentionShape &s) {
  return size_t(plan::cudnnSoftmaxSumBytes(s.batch, s.heads, s.seq));
}
size_t dqAccumBytes(const AttentionShape &s, bool deterministic) {
  return deterministic ? 0 : size_t(s.batch * s.heads * s.seq * s.headDim) * sizeof(float);
}

struct CachedPlan {
  Desc plan = nullptr;
  int64_t workspace = 0;
};

/// Process-wide: one cuDNN handle per device and the plans built on it.
/// Plans live until exit (a few per model shape).
struct Cache {
  std::mutex mutex;
  std::map<int, cudnnHandle_t> handles;
  std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t, int>,
           Expected<CachedPlan>>
      plans;
};

Cache &cache() {
  static Cache *c = new Cache; // never destroyed: handles outlive static teardown order
  return *c;
}

/// Which graph: the forward, or the backward in either form.
enum class Pass { Forward, Backward, BackwardAtomicDq };

/// The handle of the current device and the plan of (shape, pass), built
/// on first use; call with the cache locked.
Expected<std::pair<cudnnHandle_t, CachedPlan>> lookup(const AttentionShape &sh, Pass pass) {
  if (cudnnGetVersion() < 90000)
    return Status::error("cuDNN attention needs cuDNN >= 9.0, found " +
                         std::to_string(cudnnGetVersion()));
  int device = 0;
  MT_CUDA_CHECK(cudaGetDevice(&device));
  Cache &c = cache();
  auto [it, fresh] = c.handles.try_emplace(device, nullptr);
  if (fresh) {
    if (cudnnStatus_t st = cudnnCreate(&it->second); st != CUDNN_STATUS_SUCCESS) {
      c.handles.erase(it);
      return Status::error(errorContext() + "cuDNN attention: cudnnCreate: " +
                           cudnnGetErrorString(st));
    }
  }
  cudnnHandle_t handle = it->second;
  uint32_t scaleBits = 0;
  std::memcpy(&scaleBits, &sh.scale, sizeof scaleBits);
  const auto key = std::make_tuple(device, sh.batch, sh.seq, sh.heads, sh.kvHeads, sh.headDim,
                                   scaleBits, int(pass));
  auto found = c.plans.find(key);
  if (found == c.plans.end()) {
    Builder g(handle);
    CachedPlan built;
    built.plan = pass == Pass::Forward
                     ? buildForward(g, sh, built.workspace)
                     : buildBackward(g, sh, pass == Pass::Backward, built.workspace);
    found = c.plans
                .emplace(key, g.ok() ? Expected<CachedPlan>(built)
                                     : Expected<CachedPlan>(g.status()))
                .first;
  }
  if (!found->second)
    return found->second.status();
  return std::make_pair(handle, *found->second);
}

Pass backwardPass(bool deterministic) {
  return deterministic ? Pass::Backward : Pass::BackwardAtomicDq;
}

Status execute(const AttentionShape &sh, Pass pass, const std::vector<int64_t> &uids,
               std::vector<void *> pointers, void *workspace, cudaStream_t stream) {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto found = lookup(sh, pass);
  if (!found)
    return found.status();
  auto [handle, plan] = *found;
  const float scale = sh.scale, negInf = -std::numeric_limits<float>::infinity(), one = 1.0f;
  std::vector<int64_t> ids = uids;
  ids.insert(ids.end(), {kScale, kNegInf});
  pointers.insert(pointers.end(), {const_cast<float *>(&scale), const_cast<float *>(&negInf)});
  char *planWorkspace = static_cast<char *>(workspace);
  if (pass != Pass::Forward) {
    ids.insert(ids.end(), {kOne, kSoftmaxSum});
    pointers.insert(pointers.end(), {const_cast<float *>(&one), workspace});
    planWorkspace += softmaxSumBytes(sh);
    if (pass == Pass::BackwardAtomicDq) {
      ids.push_back(kDqAccum);
      pointers.push_back(planWorkspace);
      planWorkspace += dqAccumBytes(sh, false);
    }
  }
  Builder g(handle);
  Desc pack = g.make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(ids.size()),
        ids.data(), "pack uids");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
        int64_t(pointers.size()), pointers.data(), "pack pointers");
  g.set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &planWorkspace,
        "pack workspace");
  g.finalize(pack, "variant pack");
  if (g.ok())
    g.check(cudnnSetStream(handle, stream), "cudnnSetStream");
  if (g.ok())
    g.check(cudnnBackendExecute(handle, plan.plan, pack),
            pass == Pass::Forward ? "execute forward" : "execute backward");
  return g.status();
}

} // namespace

Expected<CudnnAttentionWorkspace> cudnnAttentionPrepare(const AttentionShape &shape,
                                                        bool deterministic) {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto fwd = lookup(shape, Pass::Forward);
  if (!fwd)
    return fwd.status();
  auto bwd = lookup(shape, backwardPass(deterministic));
  if (!bwd)
    return bwd.status();
  return CudnnAttentionWorkspace{size_t(fwd->second.workspace),
                                 softmaxSumBytes(shape) + dqAccumBytes(shape, deterministic) +
                                     size_t(bwd->second.workspace)};
}

Status cudnnAttentionForward(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out,
                             float *lse, void *workspace, const AttentionShape &shape,
                             cudaStream_t stream) {
  auto *cq = const_cast<bf16 *>(q), *ck = const_cast<bf16 *>(k), *cv = const_cast<bf16 *>(v);
  return execute(shape, Pass::Forward, {kQ, kK, kV, kO, kStats}, {cq, ck, cv, out, lse}, workspace,
                 stream);
}

Status cudnnAttentionBackward(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *out,
                              const float *lse, const bf16 *dout, bf16 *dq, bf16 *dk,
                              bf16 *dv, void *workspace, const AttentionShape &shape,
                              cudaStream_t stream, bool deterministic) {
  std::vector<void *> pointers{const_cast<bf16 *>(q),   const_cast<bf16 *>(k),
                               const_cast<bf16 *>(v),   const_cast<bf16 *>(out),
                               const_cast<float *>(lse), const_cast<bf16 *>(dout),
                               dq, dk, dv};
  return execute(shape, backwardPass(deterministic), {kQ, kK, kV, kO, kStats, kDo, kDq, kDk, kDv},
                 std::move(pointers), workspace, stream);
}

} // namespace mt::cuda
