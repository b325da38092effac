// RUN: mtc-opt %s -split-input-file -verify-diagnostics

func.func @router_hidden(%x: tensor<2x8x64xf32>, %w: tensor<8x32xf32>) {
  // expected-error @+1 {{'mt.moe_router' op expects weight [experts, hidden] with hidden = 64, got [8, 32]}}
  %w0, %i, %a, %z = mt.moe_router %x, %w {top_k = 2 : i64, aux_loss_coeff = 0.01 : f64}
      : (tensor<2x8x64xf32>, tensor<8x32xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @router_topk(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router' op expects 1 <= top_k <= experts (8), got 9}}
  %w0, %i, %a, %z = mt.moe_router %x, %w {top_k = 9 : i64, aux_loss_coeff = 0.01 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x9xf32>, tensor<2x8x9xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @router_coeff(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router' op expects aux_loss_coeff >= 0, got -1.000000e+00}}
  %w0, %i, %a, %z = mt.moe_router %x, %w {top_k = 2 : i64, aux_loss_coeff = -1.0 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @router_weights(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router' op expects weights of shape [2, 8, 2], got [2, 8, 3]}}
  %w0, %i, %a, %z = mt.moe_router %x, %w {top_k = 2 : i64, aux_loss_coeff = 0.01 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x3xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @router_indices(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router' op expects indices of shape [2, 8, 2], got [16, 2]}}
  %w0, %i, %a, %z = mt.moe_router %x, %w {top_k = 2 : i64, aux_loss_coeff = 0.01 : f64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<16x2xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @router_input_rank(%x: tensor<16x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router' op expects input of rank 3, got [16, 64]}}
  %w0, %i, %a, %z = mt.moe_router %x, %w {top_k = 2 : i64, aux_loss_coeff = 0.01 : f64}
      : (tensor<16x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @ce_labels(%l: tensor<2x8x256xf32>, %y: tensor<2x7xi32>, %m: tensor<2x8xf32>) {
  // expected-error @+1 {{'mt.cross_entropy' op expects labels of shape [2, 8], got [2, 7]}}
  %0 = mt.cross_entropy %l, %y, %m : (tensor<2x8x256xf32>, tensor<2x7xi32>, tensor<2x8xf32>) -> tensor<f32>
  return
}

// -----

func.func @ce_mask(%l: tensor<2x8x256xf32>, %y: tensor<2x8xi32>, %m: tensor<16xf32>) {
  // expected-error @+1 {{'mt.cross_entropy' op expects mask of shape [2, 8], got [16]}}
  %0 = mt.cross_entropy %l, %y, %m : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<16xf32>) -> tensor<f32>
  return
}

// -----

func.func @ce_rank(%l: tensor<16x256xf32>, %y: tensor<2x8xi32>, %m: tensor<2x8xf32>) {
  // expected-error @+1 {{'mt.cross_entropy' op expects logits of rank 3, got [16, 256]}}
  %0 = mt.cross_entropy %l, %y, %m : (tensor<16x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<f32>
  return
}

// -----

func.func @ce_result(%l: tensor<2x8x256xf32>, %y: tensor<2x8xi32>, %m: tensor<2x8xf32>) {
  // expected-error @+1 {{'mt.cross_entropy' op result #0 must be 0D tensor of 32-bit float values}}
  %0 = "mt.cross_entropy"(%l, %y, %m) : (tensor<2x8x256xf32>, tensor<2x8xi32>, tensor<2x8xf32>) -> tensor<2xf32>
  return
}

// -----

func.func @logits_max_axis(%l: tensor<2x8x128xf32>) {
  // expected-error @+1 {{'mt.vocab_parallel_logits_max' op expects a mesh axis (pp, dp, cp, tp, edp, ep, etp), got 'vocab'}}
  %0 = mt.vocab_parallel_logits_max %l {axis = "vocab"} : (tensor<2x8x128xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @logits_max_valid_vocab(%l: tensor<2x8x128xf32>) {
  // expected-error @+1 {{'mt.vocab_parallel_logits_max' op expects valid_vocab > 0, got 0}}
  %0 = mt.vocab_parallel_logits_max %l {axis = "tp", valid_vocab = 0 : i64} : (tensor<2x8x128xf32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @logits_max_rows(%l: tensor<2x8x128xf32>) {
  // expected-error @+1 {{'mt.vocab_parallel_logits_max' op expects row_max of shape [2, 8], got [16]}}
  %0 = mt.vocab_parallel_logits_max %l {axis = "tp"} : (tensor<2x8x128xf32>) -> tensor<16xf32>
  return
}

// -----

func.func @predicted_logits_rank(%l: tensor<16x128xf32>, %m: tensor<16xf32>, %y: tensor<16xi32>) {
  // expected-error @+1 {{'mt.vocab_parallel_predicted_logits' op expects logits of rank 3, got [16, 128]}}
  %p, %e = mt.vocab_parallel_predicted_logits %l, %m, %y {axis = "tp"} : (tensor<16x128xf32>, tensor<16xf32>, tensor<16xi32>) -> (tensor<16xf32>, tensor<16xf32>)
  return
}

// -----

func.func @predicted_logits_labels(%l: tensor<2x8x128xf32>, %m: tensor<2x8xf32>, %y: tensor<2x7xi32>) {
  // expected-error @+1 {{'mt.vocab_parallel_predicted_logits' op expects labels of shape [2, 8], got [2, 7]}}
  %p, %e = mt.vocab_parallel_predicted_logits %l, %m, %y {axis = "tp"} : (tensor<2x8x128xf32>, tensor<2x8xf32>, tensor<2x7xi32>) -> (tensor<2x8xf32>, tensor<2x8xf32>)
  return
}

// -----

func.func @cross_entropy_loss_mask_rank(%r: tensor<2x8xf32>, %mask: tensor<16xf32>) {
  // expected-error @+1 {{'mt.cross_entropy_loss' op expects mask of rank 2, got [16]}}
  %0 = mt.cross_entropy_loss %r, %r, %r, %mask : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<16xf32>) -> tensor<f32>
  return
}

// -----

func.func @cross_entropy_loss_rows(%r: tensor<2x8xf32>, %s: tensor<2x4xf32>) {
  // expected-error @+1 {{'mt.cross_entropy_loss' op expects sum_exp_logits of shape [2, 8], got [2, 4]}}
  %0 = mt.cross_entropy_loss %r, %r, %s, %r : (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x4xf32>, tensor<2x8xf32>) -> tensor<f32>
  return
}

// -----

func.func @sigmoid_gate_logit(%g: tensor<2x8x2xf32>, %x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.sigmoid_gate' op expects gate of shape [2, 8, 1], got [2, 8, 2]}}
  %y = mt.sigmoid_gate %g, %x : (tensor<2x8x2xf32>, tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @sigmoid_gate_type(%g: tensor<2x8x1xbf16>, %x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.sigmoid_gate' op expects gate and input to have one element type, got 'bf16' and 'f32'}}
  %y = mt.sigmoid_gate %g, %x : (tensor<2x8x1xbf16>, tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  return
}

// -----

func.func @sigmoid_gate_result(%g: tensor<2x8x1xf32>, %x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.sigmoid_gate' op expects result type 'tensor<2x8x64xf32>', got 'tensor<2x8x32xf32>'}}
  %y = mt.sigmoid_gate %g, %x : (tensor<2x8x1xf32>, tensor<2x8x64xf32>) -> tensor<2x8x32xf32>
  return
}

// -----

func.func @sigmoid_gate_rank0(%g: tensor<f32>, %x: tensor<f32>) {
  // expected-error @+1 {{'mt.sigmoid_gate' op expects input of rank >= 1, got []}}
  %y = mt.sigmoid_gate %g, %x : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @sigmoid_gate_grad_dgate(%g: tensor<2x8x1xf32>, %x: tensor<2x8x64xf32>) {
  // expected-error @+1 {{'mt.sigmoid_gate_grad' op expects dgate of type 'tensor<2x8x1xf32>', got 'tensor<2x8x64xf32>'}}
  %0:2 = mt.sigmoid_gate_grad %g, %x, %x : (tensor<2x8x1xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>)
  return
}

// -----

func.func @sigmoid_gate_grad_dy(%g: tensor<2x8x1xf32>, %x: tensor<2x8x64xf32>, %dy: tensor<2x8x32xf32>) {
  // expected-error @+1 {{'mt.sigmoid_gate_grad' op expects dy of type 'tensor<2x8x64xf32>', got 'tensor<2x8x32xf32>'}}
  %0:2 = mt.sigmoid_gate_grad %g, %x, %dy : (tensor<2x8x1xf32>, tensor<2x8x64xf32>, tensor<2x8x32xf32>) -> (tensor<2x8x1xf32>, tensor<2x8x64xf32>)
  return
}

// -----

// The whole micro-batch's counts: one row per load-balancing group.
func.func @router_counts_shape(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>, %c: tensor<2x8xf32>) {
  // expected-error @+1 {{'mt.moe_router' op expects token_counts of shape [1, 8], got [2, 8]}}
  %w0, %i, %a, %z = mt.moe_router %x, %w, %c {top_k = 2 : i64, aux_loss_coeff = 0.01 : f64, token_shards = 2 : i64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @router_shards_without_counts(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router' op has token_shards 2 without the token_counts of the whole micro-batch}}
  %w0, %i, %a, %z = mt.moe_router %x, %w {top_k = 2 : i64, aux_loss_coeff = 0.01 : f64, token_shards = 2 : i64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> (tensor<2x8x2xf32>, tensor<2x8x2xi32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @router_shards(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>, %dw: tensor<2x8x2xf32>, %s: tensor<f32>,
                         %c: tensor<1x8xf32>) {
  // expected-error @+1 {{'mt.moe_router_grad' op expects token_shards >= 1, got 0}}
  %dx, %dr = mt.moe_router_grad %x, %w, %dw, %s, %s, %c {top_k = 2 : i64, aux_loss_coeff = 0.01 : f64, token_shards = 0 : i64}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<2x8x2xf32>, tensor<f32>, tensor<f32>, tensor<1x8xf32>) -> (tensor<2x8x64xf32>, tensor<8x64xf32>)
  return
}

// -----

func.func @router_counts_op(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router_counts' op expects counts of shape [2, 8], got [1, 8]}}
  %c = mt.moe_router_counts %x, %w {top_k = 2 : i64, load_balancing_type = "seq_aux_loss"}
      : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> tensor<1x8xf32>
  return
}

// -----

func.func @router_counts_topk(%x: tensor<2x8x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'mt.moe_router_counts' op expects 1 <= top_k <= experts (8), got 0}}
  %c = mt.moe_router_counts %x, %w {top_k = 0 : i64} : (tensor<2x8x64xf32>, tensor<8x64xf32>) -> tensor<1x8xf32>
  return
}
