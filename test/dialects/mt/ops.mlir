// RUN: mtc-opt %s | FileCheck %s
// RUN: mtc-opt %s | mtc-opt | FileCheck %s
// RUN: mtc-opt %s -mlir-print-op-generic | mtc-opt | FileCheck %s

// Every op of the mt dialect survives a print/parse round trip. The list of
// ops is taken from the ODS files, so that a new op without a case here fails:
// RUN: python3 -c "import re,sys,glob; ops=set(re.findall(r'Mt_(?:Grad)?Op<\"(\w+)\"', ''.join(open(f).read() for f in glob.glob(sys.argv[1]+'/*.td')))); text=open(sys.argv[2]).read(); missing=sorted(o for o in ops if not re.search(r'mt\.'+o+r'\b', text)); print(len(ops), 'ops, missing:', missing); sys.exit(len(ops) < 30)" %S/../../../dialects/mt %s | FileCheck %s --check-prefix=ALL
// ALL: {{^[0-9]+}} ops, missing: []{{$}}

// CHECK: mt.param @model.embed_tokens.weight : tensor<256x64xf32> init(normal, std = 2.000000e-02)
mt.param @model.embed_tokens.weight : tensor<256x64xf32> init(normal, std = 2.0e-02)
// CHECK: mt.param @model.norm.weight : tensor<64xbf16> init(ones)
mt.param @model.norm.weight : tensor<64xbf16> init(ones)
// CHECK: mt.param @q.bias : tensor<64xf32> init(zeros)
mt.param @q.bias : tensor<64xf32> init(zeros)
// CHECK: mt.param @"model.layers.0.mlp.experts.*.up_proj.weight" : tensor<8x96x64xf32> init(normal, std = 2.000000e-02) {grouped_experts}
mt.param @"model.layers.0.mlp.experts.*.up_proj.weight" : tensor<8x96x64xf32> init(normal, std = 2.0e-02) {grouped_experts}

// CHECK-LABEL: func.func @weights
func.func @weights() -> (tensor<256x64xf32>, tensor<64xbf16>) {
  // CHECK: mt.weight @model.embed_tokens.weight : tensor<256x64xf32>
  %0 = mt.weight @model.embed_tokens.weight : tensor<256x64xf32>
  // CHECK: mt.weight @model.norm.weight : tensor<64xbf16>
  %1 = mt.weight @model.norm.weight : tensor<64xbf16>
  return %0, %1 : tensor<256x64xf32>, tensor<64xbf16>
}

// CHECK-LABEL: func.func @dense
func.func @dense(%ids: tensor<2x8xi32>, %table: tensor<256x64xf32>, %w: tensor<96x64xf32>,
                 %b: tensor<96xf32>, %x: tensor<2x8x64xf32>) -> (tensor<2x8x96xf32>, tensor<2x8x96xf32>) {
  // CHECK: mt.embedding %{{.*}}, %{{.*}} : (tensor<2x8xi32>, tensor<256x64xf32>) -> tensor<2x8x64xf32>
  %e = mt.embedding %ids, %table : (tensor<2x8xi32>, tensor<256x64xf32>) -> tensor<2x8x64xf32>
  // CHECK: mt.linear %{{.*}}, %{{.*}} : (tensor<2x8x64xf32>, tensor<96x64xf32>) -> tensor<2x8x96xf32>
  %y = mt.linear %e, %w : (tensor<2x8x64xf32>, tensor<96x64xf32>) -> tensor<2x8x96xf32>
  // CHECK: mt.linear %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  %yb = mt.linear %x, %w, %b : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  // CHECK: mt.add %{{.*}}, %{{.*}} : tensor<2x8x96xf32>
  %s = mt.add %y, %yb : tensor<2x8x96xf32>
  // CHECK: mt.swiglu %{{.*}}, %{{.*}} : tensor<2x8x96xf32>
  %g = mt.swiglu %s, %y : tensor<2x8x96xf32>
  // CHECK: mt.gelu %{{.*}} : tensor<2x8x96xf32>
  %a = mt.gelu %g : tensor<2x8x96xf32>
  // CHECK: mt.gelu %{{.*}} {approximate_tanh} : tensor<2x8x96xf32>
  %t = mt.gelu %a {approximate_tanh} : tensor<2x8x96xf32>
  return %a, %t : tensor<2x8x96xf32>, tensor<2x8x96xf32>
}

// CHECK-LABEL: func.func @norms
func.func @norms(%x: tensor<2x8x64xbf16>, %w: tensor<64xbf16>, %b: tensor<64xbf16>,
                 %q: tensor<2x8x4x16xf32>, %qw: tensor<16xf32>) -> (tensor<2x8x64xbf16>, tensor<2x8x4x16xf32>) {
  // CHECK: mt.rmsnorm %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>) -> tensor<2x8x64xbf16>
  %r = mt.rmsnorm %x, %w {eps = 1.0e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>) -> tensor<2x8x64xbf16>
  // CHECK: mt.layernorm %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64}
  %l = mt.layernorm %r, %w, %b {eps = 1.0e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<64xbf16>) -> tensor<2x8x64xbf16>
  // Per-head q/k norm (Qwen3) is rmsnorm over head_dim of the 4-D view.
  // CHECK: mt.rmsnorm %{{.*}}, %{{.*}} {eps = 9.9999999999999995E-7 : f64} : (tensor<2x8x4x16xf32>, tensor<16xf32>) -> tensor<2x8x4x16xf32>
  %qn = mt.rmsnorm %q, %qw {eps = 1.0e-06 : f64} : (tensor<2x8x4x16xf32>, tensor<16xf32>) -> tensor<2x8x4x16xf32>
  return %l, %qn : tensor<2x8x64xbf16>, tensor<2x8x4x16xf32>
}

// CHECK-LABEL: func.func @fused_norms
func.func @fused_norms(%x: tensor<2x8x64xf32>, %r: tensor<2x8x64xf32>, %w: tensor<64xf32>,
                       %dy: tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>) {
  // CHECK: mt.add_rmsnorm %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64} : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>)
  %h, %y = mt.add_rmsnorm %x, %r, %w {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>)
  // CHECK: mt.add_rmsnorm_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>)
  %dx, %dw = mt.add_rmsnorm_grad %h, %w, %dy, %y {eps = 1.0e-05 : f64} : (tensor<2x8x64xf32>, tensor<64xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<64xf32>)
  return %dx, %dw : tensor<2x8x64xf32>, tensor<64xf32>
}

// CHECK-LABEL: func.func @attention
func.func @attention(%x: tensor<2x8x64xf32>, %kv: tensor<2x8x32xf32>) -> tensor<2x8x64xf32> {
  // CHECK: mt.reshape %{{.*}} : tensor<2x8x64xf32> -> tensor<2x8x4x16xf32>
  %q = mt.reshape %x : tensor<2x8x64xf32> -> tensor<2x8x4x16xf32>
  %k = mt.reshape %kv : tensor<2x8x32xf32> -> tensor<2x8x2x16xf32>
  // CHECK: mt.rotary %{{.*}} {theta = 1.000000e+04 : f64} : tensor<2x8x4x16xf32>
  %qr = mt.rotary %q {theta = 1.0e+04 : f64} : tensor<2x8x4x16xf32>
  // CHECK: mt.rotary %{{.*}} {high_freq_factor = 4.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, original_max_position = 8192 : i64, scaling_factor = 3.200000e+01 : f64, theta = 5.000000e+05 : f64}
  %kr = mt.rotary %k {theta = 5.0e+05 : f64, scaling_factor = 32.0 : f64, low_freq_factor = 1.0 : f64,
                      high_freq_factor = 4.0 : f64, original_max_position = 8192 : i64} : tensor<2x8x2x16xf32>
  // CHECK: mt.attention %{{.*}}, %{{.*}}, %{{.*}} {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64}
  %o = mt.attention %qr, %kr, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> tensor<2x8x4x16xf32>
  %r = mt.reshape %o : tensor<2x8x4x16xf32> -> tensor<2x8x64xf32>
  return %r : tensor<2x8x64xf32>
}

// Documents packed in a row: position ids restart rotary and bound attention.
// CHECK-LABEL: func.func @packed_attention
func.func @packed_attention(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %pos: tensor<2x8xi32>) -> tensor<2x8x4x16xf32> {
  // CHECK: mt.rotary %{{.*}} positions %{{.*}} : tensor<2x8xi32> {theta = 1.000000e+04 : f64} : tensor<2x8x4x16xf32>
  %qr = mt.rotary %q positions %pos : tensor<2x8xi32> {theta = 1.0e+04 : f64} : tensor<2x8x4x16xf32>
  // CHECK: mt.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {{.*}} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8xi32>) -> tensor<2x8x4x16xf32>
  %o = mt.attention %qr, %k, %k, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8xi32>) -> tensor<2x8x4x16xf32>
  return %o : tensor<2x8x4x16xf32>
}

// Context parallelism: attention over keys gathered over cp, and ring
// attention's blocks, merges and shifts (cp_comm_type p2p), and the
// all-to-alls of cp_comm_type a2a.
// CHECK-LABEL: func.func @context_parallel_attention
func.func @context_parallel_attention(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %kall: tensor<2x16x2x16xf32>)
    -> (tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>) {
  // CHECK: mt.attention {{.*}}context_parallel_axis = "cp"{{.*}} -> tensor<2x8x4x16xf32>
  %g = mt.attention %q, %kall, %kall {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp"}
      : (tensor<2x8x4x16xf32>, tensor<2x16x2x16xf32>, tensor<2x16x2x16xf32>) -> tensor<2x8x4x16xf32>
  // CHECK: mt.ring_shift %{{.*}} {axis = "cp"} : tensor<2x8x2x16xf32>
  %k1 = mt.ring_shift %k {axis = "cp"} : tensor<2x8x2x16xf32>
  // CHECK: mt.ring_shift %{{.*}} {axis = "cp", reverse} : tensor<2x8x2x16xf32>
  %k0 = mt.ring_shift %k1 {axis = "cp", reverse} : tensor<2x8x2x16xf32>
  // CHECK: mt.all_to_all %{{.*}} {axis = "cp", concat_dim = 1 : i64, load_balanced_dim = 1 : i64, split_dim = 2 : i64} : (tensor<2x8x2x16xf32>) -> tensor<2x16x1x16xf32>
  %kh = mt.all_to_all %k {axis = "cp", split_dim = 2 : i64, concat_dim = 1 : i64, load_balanced_dim = 1 : i64} : (tensor<2x8x2x16xf32>) -> tensor<2x16x1x16xf32>
  // CHECK: mt.all_to_all %{{.*}} {axis = "cp", concat_dim = 2 : i64, split_dim = 1 : i64} : (tensor<2x16x1x16xf32>) -> tensor<2x8x2x16xf32>
  %ks = mt.all_to_all %kh {axis = "cp", split_dim = 1 : i64, concat_dim = 2 : i64} : (tensor<2x16x1x16xf32>) -> tensor<2x8x2x16xf32>
  // CHECK: mt.attention_block {{.*}}step = 0 : i64{{.*}} -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  %o0, %l0 = mt.attention_block %q, %k0, %k0 {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp", step = 0 : i64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  %o1, %l1 = mt.attention_block %q, %k1, %k1 {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp", step = 1 : i64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  // CHECK: mt.attention_merge
  %o, %l = mt.attention_merge %o0, %l0, %o1, %l1
      : (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>, tensor<2x8x4x16xf32>, tensor<2x4x8xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  // CHECK: mt.attention_merge_grad
  %da, %dla, %db, %dlb = mt.attention_merge_grad %o0, %l0, %o1, %l1, %o, %l, %o, %l
      : (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>, tensor<2x8x4x16xf32>, tensor<2x4x8xf32>, tensor<2x8x4x16xf32>, tensor<2x4x8xf32>, tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
        -> (tensor<2x8x4x16xf32>, tensor<2x4x8xf32>, tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
  // CHECK: mt.attention_block_grad
  %dq, %dk, %dv = mt.attention_block_grad %q, %k1, %k1, %o1, %l1, %db, %dlb {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, context_parallel_axis = "cp", step = 1 : i64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x4x8xf32>, tensor<2x8x4x16xf32>, tensor<2x4x8xf32>)
        -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  return %g, %o : tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>
}

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<2x8x64xf32>, %wr: tensor<8x64xf32>, %gate: tensor<8x96x64xf32>,
               %up: tensor<8x96x64xf32>, %down: tensor<8x64x96xf32>) -> (tensor<2x8x64xf32>, tensor<f32>) {
  // CHECK: mt.moe_router %{{.*}}, %{{.*}} {aux_loss_coeff = 1.000000e-02 : f64, norm_topk_prob, top_k = 2 : i64} : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  %w, %i, %aux, %z = mt.moe_router %x, %wr {top_k = 2 : i64, norm_topk_prob, aux_loss_coeff = 1.0e-02 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  // CHECK: mt.moe_router {{.*}} {aux_loss_coeff = 1.000000e-02 : f64, load_balancing_type = "seq_aux_loss", top_k = 2 : i64, z_loss_coeff = 1.000000e-03 : f64}
  %w2, %i2, %aux2, %z2 = mt.moe_router %x, %wr {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64, load_balancing_type = "seq_aux_loss", z_loss_coeff = 1.0e-03 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  // Context parallelism: this rank's counts, and the router of its share
  // of the micro-batch with the whole's counts (summed over cp).
  // CHECK: mt.moe_router_counts %{{.*}}, %{{.*}} {load_balancing_type = "seq_aux_loss", top_k = 2 : i64} : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> tensor<2x8xf32>
  %counts = mt.moe_router_counts %x, %wr {top_k = 2 : i64, load_balancing_type = "seq_aux_loss"}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> tensor<2x8xf32>
  // CHECK: mt.moe_router %{{.*}}, %{{.*}}, %{{.*}} {aux_loss_coeff = 1.000000e-02 : f64, load_balancing_type = "seq_aux_loss", token_shards = 2 : i64, top_k = 2 : i64} : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8xf32>)
  %w3, %i3, %aux3, %z3 = mt.moe_router %x, %wr, %counts {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64, load_balancing_type = "seq_aux_loss", token_shards = 2 : i64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  // Megatron-Core's decomposition: permute, grouped experts, unpermute.
  // CHECK: mt.moe_permute {{.*}} -> (tensor<32x64xf32>, tensor<8xi32>, tensor<2x8x2xi32>)
  %p, %c, %r = mt.moe_permute %x, %w, %i
      : (tensor<2x8x64xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>) -> (tensor<32x64xf32>, tensor<8xi32>, tensor<2x8x2xi32>)
  // CHECK: mt.moe_grouped_mlp {{.*}} -> (tensor<32x64xf32>, tensor<2x32x96xf32>)
  %o, %o_fc1 = mt.moe_grouped_mlp %p, %c, %gate, %up, %down
      : (tensor<32x64xf32>, tensor<8xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> (tensor<32x64xf32>, tensor<2x32x96xf32>)
  // CHECK: mt.moe_unpermute {{.*}} -> tensor<2x8x64xf32>
  %y2 = mt.moe_unpermute %o, %w, %r : (tensor<32x64xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>) -> tensor<2x8x64xf32>
  // With a capacity of 3 per expert, padded: 8 x 3 rows.
  // CHECK: mt.moe_permute {{.*}} {capacity = 3 : i64, drop_policy = "position", pad_to_capacity} {{.*}} -> (tensor<24x64xf32>
  %p3, %c3, %r3 = mt.moe_permute %x, %w, %i {capacity = 3 : i64, drop_policy = "position", pad_to_capacity}
      : (tensor<2x8x64xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>) -> (tensor<24x64xf32>, tensor<8xi32>, tensor<2x8x2xi32>)
  // Without padding: min(2·8·2, 8·5) rows.
  // CHECK: mt.moe_permute {{.*}} {capacity = 5 : i64} {{.*}} -> (tensor<32x64xf32>
  %p5, %c5, %r5 = mt.moe_permute %x, %w, %i {capacity = 5 : i64}
      : (tensor<2x8x64xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>) -> (tensor<32x64xf32>, tensor<8xi32>, tensor<2x8x2xi32>)
  return %y2, %aux : tensor<2x8x64xf32>, tensor<f32>
}

// CHECK-LABEL: func.func @shared_expert_gate
func.func @shared_expert_gate(%logit: tensor<2x8x1xf32>, %x: tensor<2x8x64xf32>) -> tensor<2x8x64xf32> {
  // CHECK: mt.sigmoid_gate %{{.*}}, %{{.*}} : (tensor<2x8x1xf32>, tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  %y = mt.sigmoid_gate %logit, %x : (tensor<2x8x1xf32>, tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  // CHECK: mt.sigmoid_gate_grad %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x1xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x1xf32>, tensor<2x8x64xf32>)
  %dg, %dx = mt.sigmoid_gate_grad %logit, %x, %y : (tensor<2x8x1xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x1xf32>, tensor<2x8x64xf32>)
  return %dx : tensor<2x8x64xf32>
}

// CHECK-LABEL: func.func @loss
func.func @loss(%logits: tensor<2x8x256xf32>, %labels: tensor<2x8xi32>, %mask: tensor<2x8xf32>) -> tensor<f32> {
  // CHECK: mt.cross_entropy %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  %l = mt.cross_entropy %logits, %labels, %mask : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  // CHECK: mt.num_tokens %{{.*}} : (tensor<2x8xf32>) -> tensor<f32>
  %tokens = mt.num_tokens %mask : (tensor<2x8xf32>) -> tensor<f32>
  // CHECK: mt.add %{{.*}}, %{{.*}} {mt.layer = 3 : i64} : tensor<f32>
  %s = mt.add %l, %l {mt.layer = 3 : i64} : tensor<f32>
  return %s : tensor<f32>
}

// CHECK-LABEL: func.func @bias_and_zeros
func.func @bias_and_zeros(%x: tensor<2x8x96xf32>, %b: tensor<96xf32>) -> (tensor<2x8x96xf32>, tensor<f32>, tensor<2x8xi32>) {
  // CHECK: mt.bias_add %{{.*}}, %{{.*}} : (tensor<2x8x96xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  %y = mt.bias_add %x, %b : (tensor<2x8x96xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  // CHECK: mt.zeros : tensor<f32>
  %z = mt.zeros : tensor<f32>
  // CHECK: mt.zeros : tensor<2x8xi32>
  %zi = mt.zeros : tensor<2x8xi32>
  return %y, %z, %zi : tensor<2x8x96xf32>, tensor<f32>, tensor<2x8xi32>
}

// CHECK-LABEL: func.func @dense_grads
func.func @dense_grads(%ids: tensor<2x8xi32>, %x: tensor<2x8x64xf32>, %w: tensor<96x64xf32>, %dy: tensor<2x8x96xf32>, %de: tensor<2x8x64xf32>) {
  // CHECK: mt.embedding_grad %{{.*}}, %{{.*}} : (tensor<2x8xi32>, tensor<2x8x64xf32>) -> tensor<256x64xf32>
  %dt = mt.embedding_grad %ids, %de : (tensor<2x8xi32>, tensor<2x8x64xf32>) -> tensor<256x64xf32>
  // CHECK: mt.embedding_grad %{{.*}}, %{{.*}} {vocab_parallel_axis = "tp"} : (tensor<2x8xi32>, tensor<2x8x64xf32>) -> tensor<128x64xf32>
  %dtv = mt.embedding_grad %ids, %de {vocab_parallel_axis = "tp"} : (tensor<2x8xi32>, tensor<2x8x64xf32>) -> tensor<128x64xf32>
  // CHECK: mt.linear_grad_input %{{.*}}, %{{.*}} : (tensor<2x8x96xf32>, tensor<96x64xf32>) -> tensor<2x8x64xf32>
  %dx = mt.linear_grad_input %dy, %w : (tensor<2x8x96xf32>, tensor<96x64xf32>) -> tensor<2x8x64xf32>
  // CHECK: mt.linear_grad_weight %{{.*}}, %{{.*}} : (tensor<2x8x64xf32>, tensor<2x8x96xf32>) -> tensor<96x64xf32>
  %dw = mt.linear_grad_weight %x, %dy : (tensor<2x8x64xf32>, tensor<2x8x96xf32>) -> tensor<96x64xf32>
  // CHECK: mt.bias_grad %{{.*}} : (tensor<2x8x96xf32>) -> tensor<96xf32>
  %db = mt.bias_grad %dy : (tensor<2x8x96xf32>) -> tensor<96xf32>
  // CHECK: mt.swiglu_grad %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x96xf32>, tensor<2x8x96xf32>, tensor<2x8x96xf32>) -> (tensor<2x8x96xf32>, tensor<2x8x96xf32>)
  %g, %u = mt.swiglu_grad %dy, %dy, %dy : (tensor<2x8x96xf32>, tensor<2x8x96xf32>, tensor<2x8x96xf32>) -> (tensor<2x8x96xf32>, tensor<2x8x96xf32>)
  // CHECK: mt.gelu_grad %{{.*}}, %{{.*}} {approximate_tanh} : (tensor<2x8x96xf32>, tensor<2x8x96xf32>) -> tensor<2x8x96xf32>
  %gx = mt.gelu_grad %dy, %dy {approximate_tanh} : (tensor<2x8x96xf32>, tensor<2x8x96xf32>) -> tensor<2x8x96xf32>
  return
}

// CHECK-LABEL: func.func @norm_grads
func.func @norm_grads(%x: tensor<2x8x64xbf16>, %w: tensor<64xbf16>, %dy: tensor<2x8x64xbf16>) {
  // CHECK: mt.rmsnorm_grad %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<2x8x64xbf16>) -> (tensor<2x8x64xbf16>, tensor<64xbf16>)
  %dx, %dw = mt.rmsnorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<2x8x64xbf16>) -> (tensor<2x8x64xbf16>, tensor<64xbf16>)
  // CHECK: mt.layernorm_grad %{{.*}}, %{{.*}}, %{{.*}} {eps = 1.000000e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<2x8x64xbf16>) -> (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<64xbf16>)
  %lx, %lw, %lb = mt.layernorm_grad %x, %w, %dy {eps = 1.0e-05 : f64} : (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<2x8x64xbf16>) -> (tensor<2x8x64xbf16>, tensor<64xbf16>, tensor<64xbf16>)
  return
}

// CHECK-LABEL: func.func @attention_grads
func.func @attention_grads(%q: tensor<2x8x4x16xf32>, %k: tensor<2x8x2x16xf32>, %do: tensor<2x8x4x16xf32>) {
  // CHECK: mt.rotary_grad %{{.*}} {high_freq_factor = 4.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, original_max_position = 8192 : i64, scaling_factor = 3.200000e+01 : f64, theta = 5.000000e+05 : f64} : (tensor<2x8x4x16xf32>) -> tensor<2x8x4x16xf32>
  %dr = mt.rotary_grad %do {theta = 5.0e+05 : f64, scaling_factor = 32.0 : f64, low_freq_factor = 1.0 : f64, high_freq_factor = 4.0 : f64, original_max_position = 8192 : i64} : (tensor<2x8x4x16xf32>) -> tensor<2x8x4x16xf32>
  // CHECK: mt.attention_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64} : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  %dq, %dk, %dv = mt.attention_grad %q, %k, %k, %do, %do {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64}
      : (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x4x16xf32>, tensor<2x8x4x16xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  return
}

// CHECK-LABEL: func.func @moe_grads
func.func @moe_grads(%x: tensor<2x8x64xf32>, %wr: tensor<8x64xf32>, %w: tensor<2x8x2xf32>, %i: tensor<2x8x2xi32>, %daux: tensor<f32>,
                     %gate: tensor<8x96x64xf32>, %up: tensor<8x96x64xf32>, %down: tensor<8x64x96xf32>,
                     %counts: tensor<1x8xf32>) {
  // CHECK: mt.moe_router_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {aux_loss_coeff = 1.000000e-02 : f64, norm_topk_prob, top_k = 2 : i64} : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x2xf32>, tensor<f32>, tensor<f32>) -> (tensor<2x8x64xf32>, tensor<8x64xf32>)
  %dx, %dwr = mt.moe_router_grad %x, %wr, %w, %daux, %daux {top_k = 2 : i64, norm_topk_prob, aux_loss_coeff = 1.0e-02 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x2xf32>, tensor<f32>, tensor<f32>) -> (tensor<2x8x64xf32>, tensor<8x64xf32>)
  // CHECK: mt.moe_router_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {aux_loss_coeff = 1.000000e-02 : f64, token_shards = 2 : i64, top_k = 2 : i64} : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x2xf32>, tensor<f32>, tensor<f32>, tensor<1x8xf32>)
  %dx2, %dwr2 = mt.moe_router_grad %x, %wr, %w, %daux, %daux, %counts {top_k = 2 : i64, aux_loss_coeff = 1.0e-02 : f64, token_shards = 2 : i64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x2xf32>, tensor<f32>, tensor<f32>, tensor<1x8xf32>) -> (tensor<2x8x64xf32>, tensor<8x64xf32>)
  return
}

// CHECK-LABEL: func.func @moe_permute_grads
func.func @moe_permute_grads(%x: tensor<2x8x64xf32>, %w: tensor<2x8x2xf32>, %r: tensor<2x8x2xi32>, %c: tensor<8xi32>,
                             %rows: tensor<32x64xf32>, %gate: tensor<8x96x64xf32>, %up: tensor<8x96x64xf32>, %down: tensor<8x64x96xf32>,
                             %fc1: tensor<2x32x96xf32>) {
  // CHECK: mt.moe_unpermute_grad {{.*}} -> (tensor<32x64xf32>, tensor<2x8x2xf32>)
  %do, %dw = mt.moe_unpermute_grad %rows, %w, %r, %x
      : (tensor<32x64xf32>, tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<2x8x64xf32>) -> (tensor<32x64xf32>, tensor<2x8x2xf32>)
  // The forward's fc1_output (gate and up pre-activations) before dy.
  // CHECK: mt.moe_grouped_mlp_grad {{.*}} : (tensor<32x64xf32>, tensor<8xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>, tensor<2x32x96xf32>, tensor<32x64xf32>) -> (tensor<32x64xf32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>)
  %dp, %dg, %du, %dd = mt.moe_grouped_mlp_grad %rows, %c, %gate, %up, %down, %fc1, %do
      : (tensor<32x64xf32>, tensor<8xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>, tensor<2x32x96xf32>, tensor<32x64xf32>)
        -> (tensor<32x64xf32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>)
  // CHECK: mt.moe_permute_grad {{.*}} -> tensor<2x8x64xf32>
  %dx = mt.moe_permute_grad %dp, %r : (tensor<32x64xf32>, tensor<2x8x2xi32>) -> tensor<2x8x64xf32>
  return
}

// CHECK-LABEL: func.func @loss_grad
func.func @loss_grad(%logits: tensor<2x8x256xf32>, %labels: tensor<2x8xi32>, %mask: tensor<2x8xf32>, %dloss: tensor<f32>) {
  // CHECK: mt.cross_entropy_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x256xf32>
  %d = mt.cross_entropy_grad %logits, %labels, %mask, %dloss : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x256xf32>
  // CHECK: mt.cross_entropy_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {valid_vocab = 250 : i64, vocab_parallel_axis = "tp"} : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x256xf32>
  %dv = mt.cross_entropy_grad %logits, %labels, %mask, %dloss {vocab_parallel_axis = "tp", valid_vocab = 250 : i64} : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x256xf32>
  return
}

// CHECK-LABEL: func.func @vocab_parallel_cross_entropy
func.func @vocab_parallel_cross_entropy(%logits: tensor<2x8x128xf32>, %labels: tensor<2x8xi32>, %mask: tensor<2x8xf32>, %dloss: tensor<f32>) {
  // CHECK: mt.vocab_parallel_logits_max %{{.*}} {axis = "tp", valid_vocab = 250 : i64} : (tensor<2x8x128xf32>) -> tensor<2x8xf32>
  %m = mt.vocab_parallel_logits_max %logits {axis = "tp", valid_vocab = 250 : i64} : (tensor<2x8x128xf32>) -> tensor<2x8xf32>
  // CHECK: mt.vocab_parallel_predicted_logits %{{.*}}, %{{.*}}, %{{.*}} {axis = "tp"} : (tensor<2x8x128xf32>, tensor<2x8xf32>, tensor<2x8xi32>) -> (tensor<2x8xf32>, tensor<2x8xf32>)
  %p, %e = mt.vocab_parallel_predicted_logits %logits, %m, %labels {axis = "tp"} : (tensor<2x8x128xf32>, tensor<2x8xf32>, tensor<2x8xi32>) -> (tensor<2x8xf32>, tensor<2x8xf32>)
  // CHECK: mt.cross_entropy_loss %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<f32>
  %l = mt.cross_entropy_loss %m, %p, %e, %mask : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<f32>
  // CHECK: mt.vocab_parallel_cross_entropy_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {axis = "tp"} : (tensor<2x8x128xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x128xf32>
  %d = mt.vocab_parallel_cross_entropy_grad %logits, %labels, %mask, %m, %e, %dloss {axis = "tp"} : (tensor<2x8x128xf32>, tensor<2x8xi32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<f32>) -> tensor<2x8x128xf32>
  return
}

// CHECK-LABEL: func.func @collectives
func.func @collectives(%x: tensor<2x8x64xf32>, %h: tensor<2x4x64xbf16>, %flat: tensor<16xf32>) {
  // CHECK: mt.all_reduce %{{.*}} {axis = "tp"} : tensor<2x8x64xf32>
  %r = mt.all_reduce %x {axis = "tp"} : tensor<2x8x64xf32>
  // CHECK: mt.all_reduce %{{.*}} {axis = "dp", reduce = "mean"} : tensor<2x8x64xf32>
  %a = mt.all_reduce %x {axis = "dp", reduce = "mean"} : tensor<2x8x64xf32>
  // CHECK: mt.all_reduce %{{.*}} {axis = "tp", reduce = "max"} : tensor<2x8x64xf32>
  %mx = mt.all_reduce %x {axis = "tp", reduce = "max"} : tensor<2x8x64xf32>
  // The embedding group (pp's first and last stage) of a tied parameter.
  // CHECK: mt.all_reduce %{{.*}} {axis = "pp_tied"} : tensor<2x8x64xf32>
  %t = mt.all_reduce %x {axis = "pp_tied"} : tensor<2x8x64xf32>
  // CHECK: mt.tp_copy %{{.*}} {axis = "tp"} : tensor<2x8x64xf32>
  %c = mt.tp_copy %x {axis = "tp"} : tensor<2x8x64xf32>
  // CHECK: mt.all_gather %{{.*}} {axis = "tp", dim = 1 : i64} : (tensor<2x4x64xbf16>) -> tensor<2x8x64xbf16>
  %g = mt.all_gather %h {axis = "tp", dim = 1 : i64} : (tensor<2x4x64xbf16>) -> tensor<2x8x64xbf16>
  // CHECK: mt.reduce_scatter %{{.*}} {axis = "tp", dim = 1 : i64} : (tensor<2x8x64xbf16>) -> tensor<2x4x64xbf16>
  %s = mt.reduce_scatter %g {axis = "tp", dim = 1 : i64} : (tensor<2x8x64xbf16>) -> tensor<2x4x64xbf16>
  // CHECK: mt.reduce_scatter %{{.*}} {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<16xf32>) -> tensor<8xf32>
  %sm = mt.reduce_scatter %flat {axis = "dp", dim = 0 : i64, reduce = "mean"} : (tensor<16xf32>) -> tensor<8xf32>
  // CHECK: mt.all_slice %{{.*}} {axis = "dp", dim = 0 : i64} : (tensor<16xf32>) -> tensor<8xf32>
  %sl = mt.all_slice %flat {axis = "dp", dim = 0 : i64} : (tensor<16xf32>) -> tensor<8xf32>
  return
}

// CHECK-LABEL: func.func @stage_transfer
func.func @stage_transfer(%x: tensor<2x16x64xf32>) -> tensor<2x16x64xf32> {
  // CHECK: mt.stage_transfer %{{.*}} {from = 0 : i64, to = 1 : i64} : tensor<2x16x64xf32>
  %y = mt.stage_transfer %x {from = 0 : i64, to = 1 : i64} : tensor<2x16x64xf32>
  return %y : tensor<2x16x64xf32>
}

// CHECK-LABEL: func.func @all_to_all_v
func.func @all_to_all_v(%rows: tensor<32x64xf32>, %send: tensor<2xi32>, %recv: tensor<2xi32>) -> tensor<64x64xf32> {
  // CHECK: mt.all_to_all_v %{{.*}}, %{{.*}}, %{{.*}} {axis = "ep"} : (tensor<32x64xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<64x64xf32>
  %r = mt.all_to_all_v %rows, %send, %recv {axis = "ep"} : (tensor<32x64xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<64x64xf32>
  return %r : tensor<64x64xf32>
}

// CHECK-LABEL: func.func @expert_dispatch
func.func @expert_dispatch(%counts: tensor<8xi32>, %rows: tensor<64x64xf32>) {
  // CHECK: mt.moe_exchange_counts %{{.*}} {axis = "ep"} : (tensor<8xi32>) -> (tensor<2xi32>, tensor<2xi32>, tensor<2x4xi32>, tensor<4xi32>)
  %s, %r, %g, %l = mt.moe_exchange_counts %counts {axis = "ep"}
      : (tensor<8xi32>) -> (tensor<2xi32>, tensor<2xi32>, tensor<2x4xi32>, tensor<4xi32>)
  // CHECK: mt.moe_sort_chunks %{{.*}}, %{{.*}} : (tensor<64x64xf32>, tensor<2x4xi32>) -> tensor<64x64xf32>
  %sorted = mt.moe_sort_chunks %rows, %g : (tensor<64x64xf32>, tensor<2x4xi32>) -> tensor<64x64xf32>
  // CHECK: mt.moe_sort_chunks %{{.*}}, %{{.*}} {inverse} : (tensor<64x64xf32>, tensor<2x4xi32>) -> tensor<64x64xf32>
  %back = mt.moe_sort_chunks %sorted, %g {inverse} : (tensor<64x64xf32>, tensor<2x4xi32>) -> tensor<64x64xf32>
  // CHECK: mt.moe_gather_counts %{{.*}} {axis = "ep"} : (tensor<8xi32>) -> (tensor<2x4xi32>, tensor<2xi32>, tensor<4xi32>)
  %gg, %off, %gl = mt.moe_gather_counts %counts {axis = "ep"}
      : (tensor<8xi32>) -> (tensor<2x4xi32>, tensor<2xi32>, tensor<4xi32>)
  // CHECK: mt.moe_sort_chunks %{{.*}}, %{{.*}}, %{{.*}} : (tensor<64x64xf32>, tensor<2x4xi32>, tensor<2xi32>) -> tensor<64x64xf32>
  %mine = mt.moe_sort_chunks %rows, %gg, %off : (tensor<64x64xf32>, tensor<2x4xi32>, tensor<2xi32>) -> tensor<64x64xf32>
  return
}

// CHECK-LABEL: func.func @optimizer
func.func @optimizer(%p: tensor<64x64xf32>, %g: tensor<64x64xf32>, %b: tensor<64xf32>, %m: tensor<64x64xf32>, %v: tensor<64x64xf32>, %step: tensor<i64>) {
  // CHECK: mt.global_norm %{{.*}}, %{{.*}} : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<f32>
  %n = mt.global_norm %g, %b : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<f32>
  // CHECK: mt.global_norm %{{.*}}, %{{.*}} {replicated = array<i1: false, true>, sharded_axis = "tp"} : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<f32>
  %ns = mt.global_norm %g, %b {sharded_axis = "tp", replicated = array<i1: false, true>} : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<f32>
  // CHECK: mt.global_norm %{{.*}} {partial_axis = "dp"} : (tensor<64xf32>) -> tensor<f32>
  %np = mt.global_norm %b {partial_axis = "dp"} : (tensor<64xf32>) -> tensor<f32>
  // CHECK: mt.sum_squares %{{.*}}, %{{.*}} {replicas = 2 : i64, replicated = array<i1: false, true>} : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<f32>
  %sq = mt.sum_squares %g, %b {replicated = array<i1: false, true>, replicas = 2 : i64} : (tensor<64x64xf32>, tensor<64xf32>) -> tensor<f32>
  // CHECK: mt.sqrt %{{.*}} : tensor<f32>
  %rt = mt.sqrt %sq : tensor<f32>
  // CHECK: mt.scale %{{.*}} {factor = 5.000000e-01 : f64} : tensor<64x64xf32>
  %sc = mt.scale %g {factor = 5.000000e-01 : f64} : tensor<64x64xf32>
  // CHECK: mt.scale_by %{{.*}}, %{{.*}} {inverse} : tensor<64x64xf32>, tensor<f32>
  %sb = mt.scale_by %g, %n {inverse} : tensor<64x64xf32>, tensor<f32>
  // CHECK: mt.check_finite %{{.*}} : tensor<f32>
  mt.check_finite %n : tensor<f32>
  // CHECK: mt.clip_coefficient %{{.*}} {max_norm = 1.000000e+00 : f64} : (tensor<f32>) -> tensor<f32>
  %c = mt.clip_coefficient %n {max_norm = 1.0 : f64} : (tensor<f32>) -> tensor<f32>
  // CHECK: mt.lr_schedule %{{.*}} {decay_steps = 300 : i64, max_lr = 3.000000e-04 : f64, min_lr = 3.000000e-05 : f64, style = "cosine", warmup_steps = 10 : i64} : (tensor<i64>) -> tensor<f32>
  %lr = mt.lr_schedule %step {max_lr = 3.0e-04 : f64, min_lr = 3.0e-05 : f64, warmup_steps = 10 : i64, decay_steps = 300 : i64, style = "cosine"} : (tensor<i64>) -> tensor<f32>
  // transformers' schedules take a warm-up longer than the run.
  // CHECK: mt.lr_schedule %{{.*}} {decay_steps = 4 : i64, {{.*}}style = "hf_linear", warmup_steps = 10 : i64}
  %lr_hf = mt.lr_schedule %step {max_lr = 1.0e-03 : f64, min_lr = 0.0 : f64, warmup_steps = 10 : i64, decay_steps = 4 : i64, style = "hf_linear"} : (tensor<i64>) -> tensor<f32>
  // CHECK: mt.adamw %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {beta1 = 9.000000e-01 : f64, beta2 = 0.94999999999999996 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-01 : f64} : (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>)
  %p1, %m1, %v1 = mt.adamw %p, %g, %m, %v, %lr, %step, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64}
      : (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>)
  return
}

// CHECK-LABEL: func.func @fused_fc1
func.func @fused_fc1(%wg: tensor<96x64xf32>, %wu: tensor<96x64xf32>, %x: tensor<2x8x64xf32>,
                     %da: tensor<2x8x96xf32>)
    -> (tensor<2x8x96xf32>, tensor<96x64xf32>, tensor<96x64xf32>) {
  // CHECK: mt.concat_rows %{{.*}}, %{{.*}} : (tensor<96x64xf32>, tensor<96x64xf32>) -> tensor<192x64xf32>
  %w = mt.concat_rows %wg, %wu : (tensor<96x64xf32>, tensor<96x64xf32>) -> tensor<192x64xf32>
  %gu = mt.linear %x, %w : (tensor<2x8x64xf32>, tensor<192x64xf32>) -> tensor<2x8x192xf32>
  // CHECK: mt.chunked_swiglu %{{.*}} : (tensor<2x8x192xf32>) -> tensor<2x8x96xf32>
  %a = mt.chunked_swiglu %gu : (tensor<2x8x192xf32>) -> tensor<2x8x96xf32>
  // CHECK: mt.chunked_swiglu_grad %{{.*}}, %{{.*}} : (tensor<2x8x192xf32>, tensor<2x8x96xf32>) -> tensor<2x8x192xf32>
  %dgu = mt.chunked_swiglu_grad %gu, %da : (tensor<2x8x192xf32>, tensor<2x8x96xf32>) -> tensor<2x8x192xf32>
  // CHECK: mt.chunked_swiglu_recompute_grad %{{.*}}, %{{.*}} : (tensor<2x8x192xf32>, tensor<2x8x96xf32>) -> (tensor<2x8x192xf32>, tensor<2x8x96xf32>)
  %dgu2, %a2 = mt.chunked_swiglu_recompute_grad %gu, %da : (tensor<2x8x192xf32>, tensor<2x8x96xf32>) -> (tensor<2x8x192xf32>, tensor<2x8x96xf32>)
  %dw = mt.linear_grad_weight %x, %dgu : (tensor<2x8x64xf32>, tensor<2x8x192xf32>) -> tensor<192x64xf32>
  // CHECK: mt.split_rows %{{.*}} : (tensor<192x64xf32>) -> (tensor<96x64xf32>, tensor<96x64xf32>)
  %dwg, %dwu = mt.split_rows %dw : (tensor<192x64xf32>) -> (tensor<96x64xf32>, tensor<96x64xf32>)
  return %a, %dwg, %dwu : tensor<2x8x96xf32>, tensor<96x64xf32>, tensor<96x64xf32>
}

// CHECK-LABEL: func.func @fused_qkv
func.func @fused_qkv(%qkv: tensor<2x8x128xf32>)
    -> (tensor<2x8x64xf32>, tensor<2x8x128xf32>) {
  // CHECK: mt.split_qkv %{{.*}} : (tensor<2x8x128xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>)
  %q, %k, %v = mt.split_qkv %qkv : (tensor<2x8x128xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>)
  // CHECK: mt.concat_qkv %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x64xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x128xf32>
  %p = mt.concat_qkv %q, %k, %v : (tensor<2x8x64xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x128xf32>
  return %q, %p : tensor<2x8x64xf32>, tensor<2x8x128xf32>
}

// CHECK-LABEL: func @fused_qkv_rotary
func.func @fused_qkv_rotary(%qkv: tensor<2x8x128xf32>, %pos: tensor<2x8xi32>)
    -> (tensor<2x8x4x16xf32>, tensor<2x8x128xf32>) {
  // CHECK: mt.split_qkv_rotary %{{.*}} positions %{{.*}} : tensor<2x8xi32> {theta = 1.000000e+04 : f64} : (tensor<2x8x128xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  %q, %k, %v = mt.split_qkv_rotary %qkv positions %pos : tensor<2x8xi32> {theta = 1.0e+04 : f64} : (tensor<2x8x128xf32>) -> (tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32>)
  // CHECK: mt.rotary_concat_qkv %{{.*}}, %{{.*}}, %{{.*}} {high_freq_factor = 4.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, original_max_position = 8192 : i64, scaling_factor = 3.200000e+01 : f64, theta = 5.000000e+05 : f64} : tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32> -> tensor<2x8x128xf32>
  %p = mt.rotary_concat_qkv %q, %k, %v {theta = 5.0e+05 : f64, scaling_factor = 32.0 : f64, low_freq_factor = 1.0 : f64, high_freq_factor = 4.0 : f64, original_max_position = 8192 : i64} : tensor<2x8x4x16xf32>, tensor<2x8x2x16xf32>, tensor<2x8x2x16xf32> -> tensor<2x8x128xf32>
  return %q, %p : tensor<2x8x4x16xf32>, tensor<2x8x128xf32>
}
