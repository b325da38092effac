// The passes of mtc. A pass is an entry here, one .cpp file and one lit test
// sharing its stem.
#ifndef MT_PASSES_TD
#define MT_PASSES_TD

include "mlir/Pass/PassBase.td"

def Autodiff : Pass<"mt-autodiff", "::mlir::ModuleOp"> {
  let summary = "Turns @forward into @forward_backward: loss and parameter gradients";
  let description = [{
    Differentiates the loss returned by `func.func @forward(input_ids,
    labels, loss_mask)` with respect to every trainable `mt.param`, through
    each op's DifferentiableOpInterface, and replaces @forward by
    `func.func @forward_backward(input_ids, labels, loss_mask, loss_scale)
    -> (loss, grads...)`. The gradient of the loss is seeded with
    `loss_scale` (1 / micro-batches per step); result i > 0 carries
    `mt.grad_of = @param`. Only gradients on a path from a trainable
    parameter to the loss are built (frozen parameters, token ids and
    routing indices get none); gradients of a value used several times
    are summed.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
}

def BuildOptimizer : Pass<"mt-build-optimizer", "::mlir::ModuleOp"> {
  let summary = "Adds @optimizer_step: global norm, NaN check, clipping, schedule, AdamW";
  let description = [{
    Creates `func.func @optimizer_step(step, (param, grad, exp_avg,
    exp_avg_sq) per parameter) -> (param, exp_avg, exp_avg_sq) per
    parameter`. Arguments and results carry `mt.role` and `mt.param`. The
    step checks the global gradient norm is finite (else the step is
    skipped), clips it to `clip-grad`, computes the learning rate of the
    schedule and applies AdamW; as Megatron, weight decay is not applied to
    rank-1 parameters (norms, biases). When the dp axis of the module's
    `shard.grid @mesh` is larger than 1, each gradient is first averaged
    over it (a module without a mesh runs on one rank); parameters split
    over tp (`sharding`) count once in the global norm, which is reduced
    over tp.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
  let options = [
    Option<"lr", "lr", "double", "3.0e-4", "peak learning rate">,
    Option<"minLr", "min-lr", "double", "0.0", "learning rate at the end of decay">,
    Option<"warmupSteps", "warmup-steps", "int64_t", "0", "linear warmup steps">,
    Option<"decaySteps", "decay-steps", "int64_t", "1000", "step at which decay ends">,
    Option<"decayStyle", "decay-style", "std::string", "\"cosine\"", "cosine, linear, constant, or transformers' hf_constant, hf_constant_with_warmup, hf_linear, hf_cosine, hf_cosine_with_min_lr">,
    Option<"weightDecay", "weight-decay", "double", "0.01", "decoupled weight decay">,
    Option<"beta1", "beta1", "double", "0.9", "AdamW beta1">,
    Option<"beta2", "beta2", "double", "0.999", "AdamW beta2">,
    Option<"eps", "eps", "double", "1.0e-8", "AdamW epsilon">,
    Option<"clipGrad", "clip-grad", "double", "1.0", "max global gradient norm (0: off)">,
  ];
}

def PartitionTensorParallel : Pass<"mt-partition-tp", "::mlir::ModuleOp"> {
  let summary = "Splits @forward over the tp mesh axis with Megatron's layouts";
  let description = [{
    Propagates shardings through @forward from replicated inputs; each op
    applies its own rule (PartitionableOpInterface, in
    dialects/mt/MtPartitionRules.cpp), Megatron-Core's layouts: a linear
    whose input is replicated is column-parallel (weight split on its output
    dimension, input through `mt.tp_copy`), one whose input is split on its
    last dimension is row-parallel (weight split on its input dimension,
    output summed by `mt.all_reduce`); reshapes carry a split from features
    to heads and back; attention and rotary run on local heads; norms over
    an unsplit dimension stay local; the embedding and the cross-entropy are
    vocab-parallel. With `sequence-parallel`, activations between those
    regions (norms, residuals) stay split along the sequence: the
    embedding's and row-parallel outputs are reduce-scattered,
    column-parallel inputs all-gathered. The tp size is that of axis `tp` of
    the module's `shard.grid @mesh` (written by the compiler from the
    ParallelConfig); values get their local types, parameters a
    `#mt.sharding` on that axis. Run before mt-autodiff: the collectives'
    gradients give the backward's collectives.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
  let options = [
    Option<"sequenceParallel", "sequence-parallel", "bool", "false",
           "keep activations outside the tensor-parallel regions split along the sequence">,
  ];
}

def ExposeCollectives : Pass<"mt-expose-collectives", "::mlir::ModuleOp"> {
  let summary = "Splits ops that reduce over ranks into local ops and mt.all_reduce";
  let description = [{
    Runs after mt-partition-tp, mt-autodiff and mt-build-optimizer, so that
    no kernel of the plan communicates inside itself:
    - a vocab-parallel `mt.cross_entropy` becomes Megatron-Core's local
      steps `mt.vocab_parallel_logits_max` -> `mt.all_reduce` (max) ->
      `mt.vocab_parallel_predicted_logits` -> `mt.all_reduce` (sum) of the
      label's logit and of the softmax denominator ->
      `mt.cross_entropy_loss`; the `mt.cross_entropy_grad` of its logits
      becomes `mt.vocab_parallel_cross_entropy_grad`, which reads the
      forward's reduced rows and is local;
    - `mt.global_norm` becomes `mt.sum_squares` (gradients replicated over
      the split axis counting 1/size each, hence once) -> `mt.all_reduce`
      (sum) over that axis when gradients are split on it, and over pp when
      the mesh's pp > 1 (stages hold disjoint parameters) -> `mt.sqrt`.
    The axis sizes come from the module's `shard.grid @mesh`.
    The vocab-parallel embedding is already a local masked lookup followed
    by the partitioning's `mt.all_reduce`, and stays as it is.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
}

#endif // MT_PASSES_TD
