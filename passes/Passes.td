// The passes of mtc. A pass is an entry here, one .cpp file and one lit test
// sharing its stem.
#ifndef MT_PASSES_TD
#define MT_PASSES_TD

include "mlir/Pass/PassBase.td"

def Autodiff : Pass<"mt-autodiff", "::mlir::ModuleOp"> {
  let summary = "Turns @forward into @forward_backward: loss and parameter gradients";
  let description = [{
    Differentiates the loss returned by `func.func @forward(input_ids,
    labels, loss_mask[, position_ids])` with respect to every trainable
    `mt.param`, through each op's DifferentiableOpInterface, and replaces
    @forward by `func.func @forward_backward(input_ids, labels, loss_mask[,
    position_ids], loss_scale) -> (loss, grads...)`. The gradient of the loss is seeded with
    `loss_scale` (1 / micro-batches per step); result i > 0 carries
    `mt.grad_of = @param`. Only gradients on a path from a trainable
    parameter to the loss are built (frozen parameters, token ids and
    routing indices get none); gradients of a value used several times
    are summed.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
}

def PerTokenLoss : Pass<"mt-per-token-loss", "::mlir::ModuleOp"> {
  let summary = "Makes @forward's loss the sum of its token losses (calculate_per_token_loss)";
  let description = [{
    Megatron-Core's calculate_per_token_loss: the loss function returns the
    sum of the micro-batch's token losses, and gradients are normalized by
    the step's token count later (mt-build-optimizer's `per-token-loss`).
    @forward must return an `mt.cross_entropy` (the masked mean); it
    returns instead `mt.scale_by` of it by `mt.num_tokens` of its loss mask
    (the micro-batch's loss tokens on this rank), which mt-autodiff
    differentiates as any op. A mixture-of-experts model's loss is that
    cross-entropy plus its routers' `aux_loss` (mt.add): each router's
    `aux_loss_coeff` and `z_loss_coeff` are multiplied by its tokens T (the
    rows of its input on this rank, B·S), so that the micro-batch's loss is
        Σ_tokens CE + Σ_routers T · aux_loss
    and, after mt-build-optimizer divides by the step's loss tokens N (every
    micro-batch, over dp and cp), each aux loss's gradient weighs T / N:
    1 / (micro-batches · dp) when every token is a loss token, as Megatron-
    Core's default. This is Megatron-Core's router under
    calculate_per_token_loss (transformer/moe/router.py: `aux_loss *
    activation.shape[0]` and `z_loss * logits.shape[0]` handed to
    MoEAuxLossAutoScaler, whose scale schedules.py forward_step sets to 1
    instead of 1 / num_microbatches). Run after the partitioning passes
    (the mask and the routers' inputs have their local shapes) and before
    mt-autodiff. Refused, by name: a loss that is not one cross-entropy
    plus routers' auxiliary losses.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
}

def BuildStepLoss : Pass<"mt-build-step-loss", "::mlir::ModuleOp"> {
  let summary = "Adds @step_loss: how a step's reported loss is formed from its micro-batches'";
  let description = [{
    Creates `func.func @step_loss(%loss {mt.role = "loss"}) -> tensor<f32>`
    (per token also `%tokens {mt.role = "num_tokens"}`), whose arguments are
    the sums of the losses (and num_tokens) @forward_backward returned for
    this rank's micro-batches (the last pipeline stage's; 0 on the others),
    and whose result is the step's loss as Megatron-Core reports it;
    `mt.loss_scale` on the function
    is the gradient seed each micro-batch's backward starts from. The plan's
    StepLoss is read from it (compiler/plan/PlanEmitter.cpp): the runtime
    forms the value on the host after the micro-batches.
      - default: `mt.scale` by 1 / `micro-batches` (the mean of the
        micro-batches' means; under cp each rank's loss is its share,
        mt-partition-cp's), `mt.all_reduce` sum over pp (only the last stage holds
        the loss), sum over cp, mean over dp; loss_scale 1 / micro-batches.
      - `per-token-loss`: the loss and %tokens summed over pp, cp and dp,
        then the loss `mt.scale_by {inverse}` the tokens; loss_scale 1 (for
        the routers' aux losses too: Megatron-Core's forward_step sets
        MoEAuxLossAutoScaler's scale to 1, not 1 / num_microbatches). With
        routers the step's loss is (Σ CE + Σ T · aux_loss) / N
        (mt-per-token-loss): the aux term is the mean of the micro-batches'
        and dp ranks' aux losses when every token is a loss token.
    Axes of size 1 (read from `shard.grid @mesh`) take no reduction.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
  let options = [
    Option<"microBatches", "micro-batches", "int64_t", "1",
           "micro-batches per step and data-parallel rank">,
    Option<"perTokenLoss", "per-token-loss", "bool", "false",
           "normalize by the step's loss tokens (Megatron's calculate_per_token_loss)">,
  ];
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
    over tp. The reductions (all-reduces, reduce-scatters) of every
    gradient come first, one mesh axis after another (cp, dp, edp), before
    any scale of a gradient and the sum of the token count: the backends
    start the leading run of one axis' reductions while backward still
    runs (Megatron's overlap_grad_reduce).

    With `distributed-optimizer` (Megatron-Core's use_distributed_optimizer),
    the trainable parameters are laid out in buckets (`mt.buckets` on the
    function: per bucket the axis, its parameters and their element offsets,
    each a multiple of 16), in reverse order, of about `bucket-elements`
    each, never across layers, weight-decay values or tp replication, and
    padded to a multiple of 16·P. A dense bucket is sharded over dp
    (P = dp, its gradient summed over cp first), or over cp when dp is 1
    (P = cp), an expert bucket over edp (P = edp); P = 1 leaves it whole,
    so that with dp·cp = 1 only the experts are sharded. The arguments are
    then (param bucket, grad bucket, exp_avg, exp_avg_sq) per bucket
    (`mt.bucket`; `mt.param` names its first parameter), the AdamW state
    being the rank's 1/P shard (`mt.sharding` on its axis). Each grad
    bucket is reduce-scattered over its axis (mean over dp, sum over cp and
    edp), the global norm sums the shards (`partial_axis`),
    each rank takes its slice of the param bucket (`mt.all_slice`), updates
    it, and the updated slices are all-gathered into the param bucket;
    with `overlap-param-gather` those all-gathers are `deferred` (the plan
    instruction's `deferred`): the backends may run
    them behind the next step's forward, as long as everything that reads
    the weights (the next forward, a checkpoint) waits for them; the values
    are the same.

    With `per-token-loss` (Megatron-Core's calculate_per_token_loss, after
    mt-per-token-loss): @forward_backward also returns its `mt.num_tokens`
    (`mt.role = "num_tokens"`, summed over the step's micro-batches as the
    gradients are), @optimizer_step takes it as its last argument, sums it
    over pp, cp and dp (`mt.all_reduce`), sums the gradients over dp (and
    cp) instead of averaging them, and divides each by that count
    (`mt.scale_by {inverse}`) before the norm, clipping and AdamW, as
    Megatron-Core's finalize_model_grads. Expert gradients are summed over
    edp and divided by the same count, without the 1 / dp (Megatron-
    Core's DistributedDataParallel sets expert_gradient_scaling_factor to 1
    under calculate_per_token_loss).
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
    Option<"distributedOptimizer", "distributed-optimizer", "bool", "false",
           "shard the AdamW state over dp in gradient buckets (Megatron's distributed optimizer)">,
    Option<"bucketElements", "bucket-elements", "int64_t", "40000000",
           "elements after which a gradient bucket is closed (Megatron's bucket_size)">,
    Option<"overlapParamGather", "overlap-param-gather", "bool", "false",
           "mark the buckets' all-gathers `deferred`: behind the next forward (Megatron's overlap_param_gather)">,
    Option<"perTokenLoss", "per-token-loss", "bool", "false",
           "sum gradients over dp and divide them by the step's loss tokens (Megatron's calculate_per_token_loss; needs mt-per-token-loss)">,
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
    vocab-parallel; a MoE layer's router sees every token while its permute,
    experts (whole: etp 1) and un-permute take this rank's share of the
    sequence. With `sequence-parallel`, activations between those
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

def PartitionContextParallel : Pass<"mt-partition-cp", "::mlir::ModuleOp"> {
  let summary = "Splits @forward's sequence over the cp mesh axis with Megatron-Core's load balancing";
  let description = [{
    Context parallelism (Megatron-Core's context_parallel_size): the
    sequence of S tokens is cut into 2·cp chunks and the rank at coordinate
    r of axis `cp` of `shard.grid @mesh` holds chunks r and 2·cp-1-r, so
    that every rank has the same causal attention work. @forward's inputs
    ([B, S] input_ids, labels, loss_mask) and every activation computed from
    them get the local sequence S/cp; `mt.rotary` takes the chunks' places
    in the sequence (`context_parallel_axis`); with `comm-type` all_gather
    each `mt.attention` reads keys and values `mt.all_gather`ed over cp
    (their gradients are reduce-scattered by autodiff) and masks causally
    by the chunks' places; with p2p (Megatron-Core's ring) it becomes cp
    `mt.attention_block`s, step t on the keys and values of the rank t
    places back that `mt.ring_shift` passes on, merged by their
    log-sum-exp (`mt.attention_merge`); with a2a (Ulysses) `mt.all_to_all`
    gives each rank the whole sequence, in its true order, for 1/cp of the
    query and key/value heads (both must be divisible by cp), attention
    runs there as on one rank, and an `mt.all_to_all` back returns each
    rank's slice of every head. Packed documents (position_ids,
    neat_packing): the position ids are split with the tokens, rotary takes
    them, and attention masks by document under every comm-type (all_gather
    and p2p by the queries' ids; a2a gathers them for the whole sequence,
    `mt.all_gather` load_balanced). The loss @forward returns (an
    `mt.cross_entropy`, the mean over the rank's tokens) becomes its share
    of the micro-batch's loss: times `mt.num_tokens` of the rank's loss
    mask, divided by their `mt.all_reduce` sum over cp, so that the sum over
    cp (mt-build-step-loss) is the mean over the whole micro-batch, and so
    are the gradients autodiff derives from it (not with `per-token-loss`,
    whose losses are sums of token losses already). mt-build-optimizer sums
    gradients over cp. Run after
    mt-partition-tp (with sequence parallelism the tp shards of the
    sequence are split again: tp shards the rank's S/cp tokens) and before
    mt-autodiff. Refused, by name: a sequence not
    divisible by 2·cp, mixture-of-experts models, and with a2a heads not
    divisible by cp.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
  let options = [
    Option<"commType", "comm-type", "std::string", "\"all_gather\"",
           "how attention sees other ranks' keys and values: p2p, all_gather or a2a">,
    Option<"perTokenLoss", "per-token-loss", "bool", "false",
           "leave the loss a mean over the rank's tokens (calculate_per_token_loss: "
           "mt-per-token-loss makes it their sum)">,
  ];
}

def PartitionExpertParallel : Pass<"mt-partition-ep", "::mlir::ModuleOp"> {
  let summary = "Splits @forward's mixture-of-experts layers over the ep and etp axes (alltoall or allgather dispatcher)";
  let description = [{
    Megatron-Core's expert parallelism: each grouped expert parameter is
    split on its experts over axis `ep` of `shard.grid @expert_mesh` (E/ep
    experts per rank), and each `mt.moe_grouped_mlp` is wrapped in the
    token dispatcher `dispatcher` names (Megatron-Core's
    moe_token_dispatcher_type). `alltoall`:
      `mt.moe_exchange_counts` (the per-expert counts, all-to-all over ep)
      -> `mt.all_to_all_v` of the permuted rows to the ranks of their experts
      -> `mt.moe_sort_chunks` (rows by local expert)
      -> `mt.moe_grouped_mlp` over the local experts
      -> `mt.moe_sort_chunks {inverse}` -> `mt.all_to_all_v` back.
    `allgather`:
      `mt.moe_gather_counts` (every rank's counts, all-gathered over ep)
      -> `mt.all_gather` of every rank's permuted rows over ep
      -> `mt.moe_sort_chunks` with offsets (the rows of the local experts)
      -> `mt.moe_grouped_mlp` over the local experts
      -> `mt.moe_sort_chunks {inverse}` (zero rows for the other experts)
      -> `mt.reduce_scatter` over ep (each rank's rows back, from the one
      rank that computed each).
    The router, `mt.moe_permute` and `mt.moe_unpermute` stay local (each
    rank routes its own tokens; the allgather dispatcher gathers the
    permuted rows, top_k per token, where Megatron-Core gathers the tokens
    and permutes them on each rank: the same rows reach the same experts).
    Received buffers have the static bound ep x (the permuted rows).
    With axis `etp` > 1 (expert tensor parallelism, Megatron-Core's
    expert_tensor_parallel_size) each expert's gate and up are split on
    their ffn columns and down on its ffn rows over etp, and the local
    experts become
      `mt.moe_gather_counts {same_experts}` over etp
      -> `mt.all_gather` of the etp ranks' expert-sorted rows
      -> `mt.moe_sort_chunks` with offsets -> `mt.moe_grouped_mlp` (this
      rank's columns of every expert, partial outputs)
      -> `mt.moe_sort_chunks {inverse}` -> `mt.reduce_scatter` over etp,
    inside the dispatcher (or alone with ep 1). Run before mt-autodiff:
    the gradients of the exchanges are the exchanges backwards. With ep =
    etp = 1 under tp (axis `tp` of @mesh > 1) the whole experts are laid
    on @expert_mesh, unsplit, so that their gradients are summed over edp
    (the tp ranks route different tokens). mtc compile runs it with --ep,
    etp or --tp > 1, after mt-partition-tp;
    mt-build-optimizer then reduces the experts' gradients over `edp` (MoE
    parallel folding) and sums their norm over ep and etp.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
  let options = [
    Option<"dispatcher", "dispatcher", "std::string", "\"alltoall\"",
           "Megatron-Core's moe_token_dispatcher_type: alltoall or allgather">,
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
      (sum) over that axis when gradients are split on it, over its
      `partial_axis` (the distributed optimizer's dp shards), and over pp when
      the mesh's pp > 1 (stages hold disjoint parameters) -> `mt.sqrt`.
    The axis sizes come from the module's `shard.grid @mesh`.
    The vocab-parallel embedding is already a local masked lookup followed
    by the partitioning's `mt.all_reduce`, and stays as it is.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
}

def Recompute : Pass<"mt-recompute", "::mlir::ModuleOp"> {
  let summary = "Recomputes chosen forward regions just before their backward (activation checkpointing)";
  let description = [{
    Runs on @forward_backward after mt-autodiff. Each recomputed region is a
    set of forward ops of the decoder layers; the backward ops that read a
    value of the region read instead a clone of the ops that make it,
    inserted just before the first of them and marked `mt.backward` and
    `mt.recompute` (the same ops with the same operands and attributes:
    bit-identical outputs, no op of mt draws random numbers). The region's
    intermediate values then die in the forward, and the buffer planner
    sees shorter lifetimes. Megatron-Core's meanings
    (transformer_config.py, recompute.py):
    - `granularity=full`: whole layers, only each unit's inputs kept; with
      `method=uniform` every run of `num-layers` layers of a pipeline chunk
      is one unit, with `method=block` each of the first `num-layers`
      layers of every chunk is one (`block-layers`: the layers of each
      chunk, in model order; none: one chunk of all layers);
    - `granularity=selective` with `modules`: `core_attn` (mt.attention and
      its reshapes), `mlp` (a dense MLP: the ops between the pre-MLP norm
      and the residual add), `moe` (the same span in a mixture-of-experts
      layer), checkpointed normally: a value that ops outside the region
      also read in the forward is kept; `layernorm` (the norms on the
      residual stream) and `moe_act` (activations inside a MoE layer;
      mt.moe_grouped_mlp fuses its own, which its backward already recomputes)
      discard their outputs: every backward read is recomputed.
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
  let options = [
    Option<"granularity", "granularity", "std::string", "\"\"",
           "full, selective, or empty (no recompute)">,
    Option<"method", "method", "std::string", "\"uniform\"", "full: uniform or block">,
    Option<"numLayers", "num-layers", "int64_t", "1",
           "full: layers per unit (uniform) or per chunk (block)">,
    ListOption<"modules", "modules", "std::string",
               "selective: core_attn, mlp, layernorm, moe_act, moe">,
    ListOption<"blockLayers", "block-layers", "int64_t",
               "layers of each pipeline chunk, in model order (default: one chunk)">,
  ];
}

def Fuse : Pass<"mt-fuse", "::mlir::ModuleOp"> {
  let summary = "Rewrites op patterns into fused ops: fewer passes over memory, fewer launches";
  let description = [{
    Runs after mt-autodiff, mt-recompute and mt-pipeline-split, on every
    function; each pattern is an option, on by default, and changes no
    value (the fused op computes what the ops it replaces computed):
    - `add-rmsnorm`: `%h = mt.add %x, %r` whose result an `mt.rmsnorm`
      normalizes becomes `%h, %y = mt.add_rmsnorm %x, %r, %w` at the
      norm (the residual add + norm of every layer: a row is read twice
      and written twice, instead of read three times and written twice);
    - `add-rmsnorm-grad`: `mt.add %g, %dx` where `%dx` is the input
      gradient of an `mt.rmsnorm_grad` used nowhere else becomes
      `mt.add_rmsnorm_grad %x, %w, %dy, %g` (the norm's dx never goes
      to memory). Skipped when `%g` has no other use: the plan then
      already accumulates a gradient's terms in one buffer in place.
    - `linear-fc1`: the gate and up projections of a SwiGLU MLP,
      `mt.linear %x, %wg` and `mt.linear %x, %wu` (with or without biases)
      read only by `mt.swiglu` and `mt.swiglu_grad`, become one
      `mt.linear %x, (mt.concat_rows %wg, %wu)` with the packed
      [..., 2F] output that `mt.chunked_swiglu` reads (Megatron-Core's
      `linear_fc1`); backward, `mt.chunked_swiglu_grad` writes the packed
      gradient and one `mt.linear_grad_input`, one `mt.linear_grad_weight`
      (and one `mt.bias_grad`) over it replace two each, their weight
      gradients cut by `mt.split_rows`. The parameters stay the Hugging
      Face ones: the plan places each pair's weights (and gradients) back
      to back and views them as one matrix. Each backward must be exactly
      the two projections' gradients and the add of their input
      gradients, or the pair stays as it is. Under the distributed
      optimizer the pass moves the pair's weights (and biases) back to
      back, in this order, within their bucket of `@optimizer_step`'s
      `mt.buckets` (to where the earlier of them was; offsets follow),
      which the views then read; a pair its buckets part, or that
      alignment padding would part, stays as it is.
    - `linear-qkv`: the query, key and value projections of one
      attention (`mt.linear`s of one input, all with biases or none, found
      from the operands of `mt.attention`, or of ring attention's
      `mt.attention_block`, through reshapes, rotary embeddings, per-head
      norms and all-gathers) become one `mt.linear %x,
      (mt.concat_rows %wq, %wk, %wv)` whose [..., Q + 2K] output
      `mt.split_qkv` cuts into q, k and v (Megatron-Core's `linear_qkv`);
      backward, `mt.concat_qkv` packs the three output gradients and one
      `mt.linear_grad_input`, one `mt.linear_grad_weight` (and one
      `mt.bias_grad`) over it replace three each, their weight gradients
      cut by `mt.split_rows`. Parameters, placement and conditions as
      `linear-fc1`; each backward must be exactly the three projections'
      gradients and the adds of their input gradients.
    - `rotary-qkv` (after `linear-qkv`): `mt.split_qkv` whose q and k are
      read only, through their reshapes to [B, S, heads, D], by two
      `mt.rotary` with the same attributes and position ids, and whose v
      only by a reshape, becomes `mt.split_qkv_rotary` (Megatron-Core's
      fused rope: the packed output is read once and q, k, v written once);
      backward, `mt.concat_qkv` of two such `mt.rotary_grad` (through
      reshapes, read by nothing else) and a reshaped dv becomes
      `mt.rotary_concat_qkv`. Context-parallel rotaries stay apart.
    - `swiglu-recompute` (after `linear-fc1`): an `mt.chunked_swiglu`
      whose output the backward reads only in the down projection's
      `mt.linear_grad_weight` has that output recomputed by the backward's
      `mt.chunked_swiglu_grad` of the same input, which becomes
      `mt.chunked_swiglu_recompute_grad` (bit-identical; one more write of
      [..., F] per layer instead of keeping it from forward to backward);
      the weight gradient moves after it. Left to mt-recompute where that
      recomputes the MLP already.
    The ops of a pattern must be in the same block, on the same virtual
    stage and equally marked backward or recomputed; no other reader of
    the add's result may sit between it and the norm. The fused op takes
    the attributes (`mt.layer`, ...) of the norm or norm gradient (of the
    later projection).
  }];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
  let options = [
    Option<"addRMSNorm", "add-rmsnorm", "bool", "true",
           "fuse a residual add with the RMSNorm of its sum">,
    Option<"addRMSNormGrad", "add-rmsnorm-grad", "bool", "true",
           "fuse an RMSNorm's input gradient with the residual gradient it is added to">,
    Option<"linearFc1", "linear-fc1", "bool", "true",
           "one GEMM for the gate and up projections of a SwiGLU MLP, forward and backward">,
    Option<"linearQkv", "linear-qkv", "bool", "true",
           "one GEMM for the query, key and value projections, forward and backward">,
    Option<"rotaryQkv", "rotary-qkv", "bool", "true",
           "the rotary embedding of q and k applied as the qkv GEMM's output is split, and "
           "undone as their gradients are packed">,
    Option<"swigluRecompute", "swiglu-recompute", "bool", "true",
           "recompute a SwiGLU MLP's activation in its gradient instead of keeping it for "
           "the down projection's weight gradient">,
  ];
}

def PipelineSplit : Pass<"mt-pipeline-split", "::mlir::ModuleOp"> {
  let summary = "Splits the training step into pipeline (virtual) stages";
  let description = [{
    With the mesh's pp > 1 (`shard.grid @mesh`) and `chunk-layers`, the
    decoder layers of each virtual stage v = chunk x pp + stage
    (ParallelConfig::chunkLayers, Megatron's interleaved order):
    - every op of @forward_backward but mt.weight gets `mt.virtual_stage`:
      its layer's (`mt.layer`), or outside the layers the first virtual
      stage (embedding, its gradient) or the last (final norm, head, loss
      and their gradients), by its place in the function;
    - a value used on another virtual stage passes through one
      `mt.stage_transfer` per receiving stage: activations to the next
      virtual stage, their gradients back to the previous one; any other
      crossing is an error;
    - every `mt.param` gets `mt.pipeline_stage`, the stage whose ops read
      it, and one read by the first and the last stage (tied embeddings)
      `mt.tied_stage` (the last; only those two may share a parameter);
    - in @optimizer_step (when present), each tied parameter's gradient
      argument (or its distributed optimizer's bucket, which then holds
      only tied parameters) is first summed over the embedding group:
      `mt.all_reduce {axis = "pp_tied"}` (Megatron-Core's
      _allreduce_embedding_grads), which every other use then reads;
    - each per-parameter op of @optimizer_step (its gradient's
      reductions, the distributed optimizer's slice and all-gather, AdamW)
      gets the parameter's `mt.pipeline_stage` and `mt.tied_stage` and runs
      on those stages only; the others (norm, clipping, schedule) run on
      every stage; each `mt.sum_squares` gets `stages`: the stage that owns
      each operand's parameter, so that each stage sums its own gradients
      once before the norm's all-reduce over pp.
    The plan emitter makes one forward and one backward program per
    virtual stage from this, each transfer a send/recv pair, and one
    optimizer program per stage. Runs last:
    after mt-expose-collectives and the canonicalizer. With pp = 1 it does
    nothing.
  }];
  let options = [
    ListOption<"chunkLayers", "chunk-layers", "int64_t",
               "decoder layers of each virtual stage, in virtual stage order">
  ];
  let dependentDialects = ["::mt::MtDialect", "::mlir::func::FuncDialect"];
}

#endif // MT_PASSES_TD
