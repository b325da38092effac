// The `mt` dialect: model-level tensor ops of a decoder-only transformer.
#ifndef MT_DIALECT_TD
#define MT_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"

def Mt_Dialect : Dialect {
  let name = "mt";
  let cppNamespace = "::mt";
  let summary = "Model-level ops of transformer LLMs with static shapes";
  let description = [{
    Ops of a transformer forward graph (embedding, linear, norms, rotary
    embedding, grouped-query attention, feed-forward activations, mixture of
    experts, cross-entropy) over statically shaped `f32`/`bf16` tensors.
    Trainable parameters are module-level `mt.param` symbols named exactly as
    the Hugging Face state dict names them; `mt.weight` reads one.

    Ops of decoder layer `i` carry the discardable attribute `mt.layer = i`,
    which pipeline partitioning and `mtc stats` rely on.

    The device mesh is the upstream `shard.grid @mesh` whose `mt.axes`
    names its axes in Megatron-Core's order (pp, dp, cp, tp), and for
    expert layers `shard.grid @expert_mesh` (pp, edp, ep, etp) over the same
    ranks; shardings (`#mt.sharding`) name the axes they split over.
  }];
  let hasOperationAttrVerify = 1;
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::mlir::shard::ShardDialect"];
  let extraClassDeclaration = [{
    /// Name of the discardable attribute that assigns an op to a decoder layer.
    static constexpr ::llvm::StringLiteral kLayerAttrName = "mt.layer";
    /// Integer attribute mt-pipeline-split gives every op of
    /// @forward_backward in a pipeline: the virtual stage that runs it
    /// (chunk c of stage s is c x pp + s).
    static constexpr ::llvm::StringLiteral kVirtualStageAttrName = "mt.virtual_stage";
    /// Integer attributes mt-pipeline-split gives every mt.param in a
    /// pipeline: the stage that holds and updates it, and a second stage
    /// that keeps a copy (tied embeddings: the last).
    static constexpr ::llvm::StringLiteral kPipelineStageAttrName = "mt.pipeline_stage";
    static constexpr ::llvm::StringLiteral kTiedStageAttrName = "mt.tied_stage";
    /// Unit attribute of the ops mt-autodiff creates: the backward pass.
    static constexpr ::llvm::StringLiteral kBackwardAttrName = "mt.backward";
    /// Unit attribute of the forward ops mt-recompute clones into the
    /// backward pass (also marked `mt.backward`).
    static constexpr ::llvm::StringLiteral kRecomputeAttrName = "mt.recompute";
    /// Module attribute: the Hugging Face config.json the model came from.
    static constexpr ::llvm::StringLiteral kHfConfigAttrName = "mt.hf_config";
    /// Attribute of a `shard.grid`: the names of its axes, outermost first.
    static constexpr ::llvm::StringLiteral kAxesAttrName = "mt.axes";
    /// Attribute of @optimizer_step under the distributed optimizer: its
    /// gradient buckets (axis, params, offsets; mt-build-optimizer).
    static constexpr ::llvm::StringLiteral kBucketsAttrName = "mt.buckets";
    /// The function mt-build-step-loss adds: how a step's reported loss is
    /// formed (the plan's StepLoss), and its attribute: the f64 gradient
    /// seed of each micro-batch's backward.
    static constexpr ::llvm::StringLiteral kStepLossFunctionName = "step_loss";
    static constexpr ::llvm::StringLiteral kLossScaleAttrName = "mt.loss_scale";
  }];
}

def Mt_InitKind : I32EnumAttr<"InitKind", "parameter initialization rule", [
  I32EnumAttrCase<"normal", 0>,
  I32EnumAttrCase<"zeros", 1>,
  I32EnumAttrCase<"ones", 2>
]> {
  let cppNamespace = "::mt";
}

include "dialects/mt/MtInstructions.td"

class Mt_Op<string mnemonic, list<Trait> traits = []>
    : Op<Mt_Dialect, mnemonic, traits> {
  /// The plan instruction the op lowers to; unset: the op is no instruction
  /// (an alias, a symbol, or split into others before plan emission).
  Mt_Instruction instruction = ?;
  /// Whether the instruction adds into its outputs (+=) instead of writing
  /// them: set for the backward ops (runtime/cpu/Kernels.md).
  bit addsIntoResults = 0;
}

def Mt_FloatTensor : RankedTensorOf<[F32, BF16]>;
def Mt_IdTensor : RankedTensorOf<[I32, I64]>;
def Mt_F32Scalar : 0DTensorOf<[F32]>;

#endif // MT_DIALECT_TD
