// Optimizer ops of the `mt` dialect, created by the mt-build-optimizer pass:
// the global gradient norm, the NaN/Inf check, clipping, the learning-rate
// schedule and AdamW.
#ifndef MT_OPTIMIZER_OPS_TD
#define MT_OPTIMIZER_OPS_TD

def Mt_GlobalNormOp : Mt_Op<"global_norm", [Pure]> {
  let summary = "L2 norm of all gradients together";
  let description = [{
    sqrt(Σ over every element of every operand of g²), accumulated in fp64.
    With `sharded_axis`, operands are the local shards of gradients split
    over that mesh axis, except those flagged in `replicated` (held whole by
    every rank of the axis, counted once); the sum is reduced over the axis.
    With `partial_axis`, every operand not flagged in `experts` is this
    rank's disjoint part of gradients partitioned over that axis as well
    (the distributed optimizer's shards of the dense gradient buckets over
    dp): their sum is also reduced over it. With `expert_axes`, the operands
    flagged in `experts` are disjoint expert shards on @expert_mesh over
    those axes (MoE parallel folding: ep, and etp when the experts are split
    over tensor-parallel ranks; edp for the distributed optimizer's shards
    of the expert buckets; the dense ones split over `sharded_axis`, tp, or
    whole): their sum is reduced over `expert_axes` apart and added.
    mt-expose-collectives rewrites it into mt.sum_squares, mt.all_reduce
    over the axes (mt.add of the two sums) and mt.sqrt; plans never hold it.

    ```mlir
    %norm = mt.global_norm %g0, %g1 : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<f32>
    %norm = mt.global_norm %s0, %s1 {partial_axis = "dp"} : (tensor<4096xf32>, tensor<64xf32>) -> tensor<f32>
    %norm = mt.global_norm %d, %e {expert_axes = ["ep", "etp"], experts = array<i1: false, true>} : (tensor<64xf32>, tensor<2x8x4xf32>) -> tensor<f32>
    %norm = mt.global_norm %d, %e {sharded_axis = "tp", replicated = array<i1: false, false>, partial_axis = "dp", expert_axes = ["ep", "etp", "edp"], experts = array<i1: false, true>} : (tensor<16xf32>, tensor<32xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Variadic<Mt_FloatTensor>:$grads,
                       OptionalAttr<StrAttr>:$sharded_axis,
                       OptionalAttr<DenseBoolArrayAttr>:$replicated,
                       OptionalAttr<StrAttr>:$partial_axis,
                       OptionalAttr<StrArrayAttr>:$expert_axes,
                       OptionalAttr<DenseBoolArrayAttr>:$experts);
  let results = (outs Mt_F32Scalar:$norm);
  let assemblyFormat = "$grads attr-dict `:` functional-type(operands, results)";
}

def Mt_SumSquaresOp : Mt_Op<"sum_squares", [Pure]> {
  let summary = "Sum of the squares of every element of every operand";
  let description = [{
    Σ g² over every element of every operand, accumulated in fp64 and
    rounded to f32 (the local part of the global gradient norm). Operands
    flagged in `replicated` count 1 / `replicas` each: they are held whole
    by the `replicas` ranks whose sums an all-reduce adds, and so count once.
    In a pipeline, `stages` (mt-pipeline-split) names the stage that counts
    each operand, the one that owns its parameter: each stage sums only its
    own operands (a tied parameter's gradient, held by the first and the
    last stage, counts on the first), and the all-reduce over pp that
    follows adds the stages' sums.

    ```mlir
    %sq = mt.sum_squares %g0, %g1 {replicated = array<i1: false, true>, replicas = 2 : i64}
        : (tensor<32x64xf32>, tensor<64xf32>) -> tensor<f32>
    %sq = mt.sum_squares %g0, %g1 {stages = array<i64: 0, 1>}
        : (tensor<32x64xf32>, tensor<64xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Variadic<Mt_FloatTensor>:$grads,
                       OptionalAttr<DenseBoolArrayAttr>:$replicated,
                       DefaultValuedAttr<I64Attr, "1">:$replicas,
                       OptionalAttr<DenseI64ArrayAttr>:$stages);
  let results = (outs Mt_F32Scalar:$sum);
  let assemblyFormat = "$grads attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Optimizer", "replicas replicated:s?", "">;
}

def Mt_SqrtOp : Mt_Op<"sqrt", [Pure, SameOperandsAndResultType]> {
  let summary = "Square root of a scalar, negative values taken as 0";
  let description = [{
    sqrt(max(x, 0)) of an f32 scalar: the global gradient norm from its
    reduced sum of squares.

    ```mlir
    %norm = mt.sqrt %sq : tensor<f32>
    ```
  }];
  let arguments = (ins Mt_F32Scalar:$input);
  let results = (outs Mt_F32Scalar:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let instruction = Mt_Instruction<"Optimizer", "", "1; 1">;
}

def Mt_ScaleOp : Mt_Op<"scale", [Pure, SameOperandsAndResultType]> {
  let summary = "Every element multiplied by a constant factor";
  let description = [{
    `input * factor`, element-wise. mt-build-optimizer scales expert
    gradients with it: they are summed over the expert data-parallel ranks
    (edp) and then scaled by 1 / (dp · cp), Megatron-Core's
    expert_gradient_scaling_factor (distributed_data_parallel.py), because
    each expert's gradient already sums the tokens of its ep group's ranks.

    ```mlir
    %g = mt.scale %sum {factor = 5.000000e-01 : f64} : tensor<4x64x32xf32>
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$input, F64Attr:$factor);
  let results = (outs Mt_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let instruction = Mt_Instruction<"Optimizer", "n factor:f", "n; n">;
}

def Mt_ScaleByOp : Mt_Op<"scale_by", [Pure, AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<Mt_DifferentiableOpInterface>]> {
  let summary = "Every element multiplied (or divided) by a scalar computed at run time";
  let description = [{
    `input` (any f32 shape) times the f32 scalar `factor`, or with `inverse`
    divided by it (0 where `factor` is 0: a step without loss tokens has no
    gradient). With calculate_per_token_loss, mt-per-token-loss makes each
    micro-batch's loss the sum of its token losses (its mean times
    mt.num_tokens), and mt-build-optimizer divides every gradient by the
    step's token count before the norm and clipping, as Megatron-Core's
    finalize_model_grads (scale_gradients(1 / num_tokens)). Differentiable
    in `input` only.

    ```mlir
    %sum = mt.scale_by %mean, %n : tensor<f32>, tensor<f32>
    %g1 = mt.scale_by %g, %tokens {inverse} : tensor<64x64xf32>, tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32]>:$input, Mt_F32Scalar:$factor,
                       UnitAttr:$inverse);
  let results = (outs RankedTensorOf<[F32]>:$result);
  let assemblyFormat = "$input `,` $factor attr-dict `:` type($input) `,` type($factor)";
  let instruction = Mt_Instruction<"Elementwise", "n inverse?", "n; 1; n">;
}

def Mt_CheckFiniteOp : Mt_Op<"check_finite"> {
  let summary = "Skips the rest of the step when a value is NaN or infinite";
  let description = [{
    The one host synchronization of a step: when `value` is not finite, the
    runtime skips every op after this one in the step (no parameter or
    optimizer-state update), reports the step as skipped, and training goes
    on with the next step.

    ```mlir
    mt.check_finite %norm : tensor<f32>
    ```
  }];
  let arguments = (ins Mt_F32Scalar:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
  let instruction = Mt_Instruction<"Optimizer", "", "1">;
}

def Mt_ClipCoefficientOp : Mt_Op<"clip_coefficient", [Pure]> {
  let summary = "Scale that clips the global gradient norm to max_norm";
  let description = [{
    min(1, max_norm / (norm + 1e-6)) as Megatron's `clip_grad`; 1 when
    max_norm is 0 (clipping off).

    ```mlir
    %c = mt.clip_coefficient %norm {max_norm = 1.0 : f64} : (tensor<f32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Mt_F32Scalar:$norm, F64Attr:$max_norm);
  let results = (outs Mt_F32Scalar:$coefficient);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let instruction = Mt_Instruction<"Optimizer", "max_norm:f", "1; 1">;
}

def Mt_LRScheduleOp : Mt_Op<"lr_schedule", [Pure]> {
  let summary = "Learning rate at a step: linear warmup, then decay to min_lr";
  let description = [{
    `step` is the 1-based optimizer step. lr = max_lr · step / warmup_steps
    while step <= warmup_steps; then, with p = (step - warmup_steps) /
    (decay_steps - warmup_steps) clamped to [0, 1], `style` gives
    min_lr + (max_lr - min_lr) · f(p) with f = (1 + cos(π p)) / 2 (cosine),
    1 - p (linear) or 1 (constant: lr = max_lr after warmup).
    Styles hf_constant, hf_constant_with_warmup, hf_linear, hf_cosine and
    hf_cosine_with_min_lr are transformers' schedules of those names
    (get_scheduler, optimization.py) with num_training_steps = decay_steps,
    evaluated at t = step - 1 (LambdaLR's first step is t = 0).

    ```mlir
    %lr = mt.lr_schedule %step {max_lr = 3.0e-04 : f64, min_lr = 3.0e-05 : f64, warmup_steps = 10 : i64, decay_steps = 300 : i64, style = "cosine"}
        : (tensor<i64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins 0DTensorOf<[I64]>:$step, F64Attr:$max_lr, F64Attr:$min_lr,
                       I64Attr:$warmup_steps, I64Attr:$decay_steps,
                       StrAttr:$style);
  let results = (outs Mt_F32Scalar:$lr);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Optimizer", "max_lr:f min_lr:f warmup_steps decay_steps "
      "style=cosine|linear|constant|hf_constant|hf_constant_with_warmup|hf_linear|hf_cosine|"
      "hf_cosine_with_min_lr", "1; 1">;
}

def Mt_AdamWOp : Mt_Op<"adamw", [Pure]> {
  let summary = "One AdamW update of a parameter with fp32 moments";
  let description = [{
    As `torch.optim.AdamW`: g = grad · grad_scale; p ← p · (1 - lr ·
    weight_decay); m ← β1 m + (1 - β1) g; v ← β2 v + (1 - β2) g²;
    p ← p - lr / (1 - β1^step) · m / (sqrt(v) / sqrt(1 - β2^step) + eps).
    Results are the new parameter, m and v; the backends update in place.
    Megatron's rule for weight decay (none on norms and biases) is applied
    when the op is built.

    ```mlir
    %p1, %m1, %v1 = mt.adamw %p, %g, %m, %v, %lr, %step, %scale {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64}
        : (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<f32>, tensor<i64>, tensor<f32>)
          -> (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>)
    ```
  }];
  let arguments = (ins Mt_FloatTensor:$param, Mt_FloatTensor:$grad,
                       Mt_FloatTensor:$exp_avg, Mt_FloatTensor:$exp_avg_sq,
                       Mt_F32Scalar:$lr, 0DTensorOf<[I64]>:$step,
                       Mt_F32Scalar:$grad_scale, F64Attr:$beta1, F64Attr:$beta2,
                       F64Attr:$eps, F64Attr:$weight_decay);
  let results = (outs Mt_FloatTensor:$new_param, Mt_FloatTensor:$new_exp_avg,
                      Mt_FloatTensor:$new_exp_avg_sq);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let instruction = Mt_Instruction<"Optimizer", "n beta1:f beta2:f eps:f weight_decay:f",
      "n; n; n; n; 1; 1; 1; n; n; n">;
}

#endif // MT_OPTIMIZER_OPS_TD
