// Builds the `mt` forward graph of a Hugging Face model spec.
#ifndef MT_COMPILER_HF_MODELBUILDER_H
#define MT_COMPILER_HF_MODELBUILDER_H

#include "compiler/config/MoeOptions.h"
#include "compiler/hf/HfConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace mt {

struct ModelShape {
  int64_t microBatch = 1;
  int64_t seq = 2048;
  bool bf16 = false; // parameter and activation element type (else f32)
  /// Rows pack several documents (LLaMA-Factory's neat_packing): @forward
  /// takes a fourth input, position_ids [batch, seq] i32, that restarts
  /// rotary positions and confines attention to each document.
  bool packedDocuments = false;
  /// Routing, capacity and auxiliary losses of mixture-of-experts layers.
  MoeOptions moe;
};

/// Refuses a spec whose sizes cannot exist, naming the config keys (or
/// flags) and the limit: vocab_size above 2^31 - 1 (token ids are int32),
/// a GEMM dimension above 2^31 - 1 (BLAS's 32-bit interface), and a tensor
/// of more than kMaxTensorElements (checkTensorSizes' rule, ModelInfo.h).
/// `path` names the config in the message.
/// Call it before buildModel, which multiplies these sizes unchecked; the
/// sum over all parameters is checked where it is formed (ModelInfo.h).
Status checkModelSizes(const HfModelSpec &spec, const ModelShape &shape,
                       const std::string &path);

/// Megatron-Core's load-balancing coefficient of a MoE layer: the option
/// given, else the config's router_aux_loss_coef x top_k (transformers'
/// load_balancing_loss_func is top_k times switch_load_balancing_loss_func
/// for one coefficient, MtOps.td).
double auxLossCoeffOf(const MoeSpec &moe, const MoeOptions &options);

/// Lines saying where the model trains as Megatron-Core's does and
/// transformers' would not: the routers' load-balancing loss added although
/// `output_router_logits` is false (transformers adds it only when true,
/// load_balancing_loss_func over all layers' logits pooled; mtc sums each MoE
/// layer's, with the coefficient `shape.moe` gives), and a `pad_token_id`
/// row trained (transformers' nn.Embedding padding_idx gives it no gradient
/// and zero at init). Empty where they agree.
std::vector<std::string> megatronChoiceNotes(const HfModelSpec &spec, const ModelShape &shape);

/// A module with one `mt.param` per HF tensor and `func.func @forward(
/// input_ids, labels, loss_mask[, position_ids]) -> loss`, ops of layer i
/// tagged `mt.layer`.
mlir::OwningOpRef<mlir::ModuleOp> buildModel(mlir::MLIRContext &context,
                                             const HfModelSpec &spec,
                                             const ModelShape &shape);

} // namespace mt

#endif // MT_COMPILER_HF_MODELBUILDER_H
