// RUN: mtc-opt %s -split-input-file -verify-diagnostics
// Verifier errors of the optimizer ops (dialects/mt/MtOptimizerOps.cpp).

func.func @lr_schedule_style(%s: tensor<i64>) {
  // expected-error @+1 {{'mt.lr_schedule' op expects style cosine, linear, constant, hf_constant, hf_constant_with_warmup, hf_linear, hf_cosine, hf_cosine_with_min_lr, got 'step'}}
  %0 = mt.lr_schedule %s {max_lr = 1.0e-03 : f64, min_lr = 0.0 : f64, warmup_steps = 0 : i64, decay_steps = 10 : i64, style = "step"} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @lr_schedule_min_above_max(%s: tensor<i64>) {
  // expected-error @+1 {{'mt.lr_schedule' op expects 0 <= min_lr (2.000000e-03) <= max_lr (1.000000e-03)}}
  %0 = mt.lr_schedule %s {max_lr = 1.0e-03 : f64, min_lr = 2.0e-03 : f64, warmup_steps = 0 : i64, decay_steps = 10 : i64, style = "cosine"} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @lr_schedule_negative(%s: tensor<i64>) {
  // expected-error @+1 {{'mt.lr_schedule' op expects 0 <= min_lr (-2.000000e-03) <= max_lr (-1.000000e-03)}}
  %0 = mt.lr_schedule %s {max_lr = -1.0e-03 : f64, min_lr = -2.0e-03 : f64, warmup_steps = 0 : i64, decay_steps = 10 : i64, style = "linear"} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @lr_schedule_warmup_negative(%s: tensor<i64>) {
  // expected-error @+1 {{'mt.lr_schedule' op expects 0 <= warmup_steps (-1) <= decay_steps (10)}}
  %0 = mt.lr_schedule %s {max_lr = 1.0e-03 : f64, min_lr = 0.0 : f64, warmup_steps = -1 : i64, decay_steps = 10 : i64, style = "cosine"} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @lr_schedule_decay_before_warmup(%s: tensor<i64>) {
  // expected-error @+1 {{'mt.lr_schedule' op expects 0 <= warmup_steps (20) <= decay_steps (10)}}
  %0 = mt.lr_schedule %s {max_lr = 1.0e-03 : f64, min_lr = 0.0 : f64, warmup_steps = 20 : i64, decay_steps = 10 : i64, style = "cosine"} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @adamw_grad(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>, %b: tensor<32xf32>) {
  // expected-error @+1 {{'mt.adamw' op expects grad of type 'tensor<64xf32>', got 'tensor<32xf32>'}}
  %0:3 = mt.adamw %p, %b, %p, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<32xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_exp_avg(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>, %b: tensor<64xbf16>) {
  // expected-error @+1 {{'mt.adamw' op expects exp_avg of type 'tensor<64xf32>', got 'tensor<64xbf16>'}}
  %0:3 = mt.adamw %p, %g, %b, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xbf16>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_exp_avg_sq(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>, %b: tensor<8x8xf32>) {
  // expected-error @+1 {{'mt.adamw' op expects exp_avg_sq of type 'tensor<64xf32>', got 'tensor<8x8xf32>'}}
  %0:3 = mt.adamw %p, %g, %p, %b, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<8x8xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_new_param(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>) {
  // expected-error @+1 {{'mt.adamw' op expects new_param of type 'tensor<64xf32>', got 'tensor<64xbf16>'}}
  %0:3 = mt.adamw %p, %g, %p, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xbf16>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_new_exp_avg(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>) {
  // expected-error @+1 {{'mt.adamw' op expects new_exp_avg of type 'tensor<64xf32>', got 'tensor<32xf32>'}}
  %0:3 = mt.adamw %p, %g, %p, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<32xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_new_exp_avg_sq(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>) {
  // expected-error @+1 {{'mt.adamw' op expects new_exp_avg_sq of type 'tensor<64xf32>', got 'tensor<1x64xf32>'}}
  %0:3 = mt.adamw %p, %g, %p, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<1x64xf32>)
  return
}

// -----

func.func @adamw_beta1(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>) {
  // expected-error @+1 {{'mt.adamw' op expects betas in [0, 1), got beta1 = 1.000000e+00, beta2 = 9.500000e-01}}
  %0:3 = mt.adamw %p, %g, %p, %p, %lr, %s, %c {beta1 = 1.0 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_beta2(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>) {
  // expected-error @+1 {{'mt.adamw' op expects betas in [0, 1), got beta1 = 9.000000e-01, beta2 = -5.000000e-01}}
  %0:3 = mt.adamw %p, %g, %p, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = -0.5 : f64, eps = 1.0e-08 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_eps(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>) {
  // expected-error @+1 {{'mt.adamw' op expects eps > 0 and weight_decay >= 0, got eps = 0.000000e+00, weight_decay = 1.000000e-01}}
  %0:3 = mt.adamw %p, %g, %p, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 0.0 : f64, weight_decay = 0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @adamw_weight_decay(%p: tensor<64xf32>, %g: tensor<64xf32>, %lr: tensor<f32>, %s: tensor<i64>, %c: tensor<f32>) {
  // expected-error @+1 {{'mt.adamw' op expects eps > 0 and weight_decay >= 0, got eps = 1.000000e-08, weight_decay = -1.000000e-01}}
  %0:3 = mt.adamw %p, %g, %p, %p, %lr, %s, %c {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-08 : f64, weight_decay = -0.1 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @lr_schedule_hf_decay_negative(%s: tensor<i64>) {
  // expected-error @+1 {{'mt.lr_schedule' op expects warmup_steps (20) and decay_steps (-1) >= 0}}
  %0 = mt.lr_schedule %s {max_lr = 1.0e-03 : f64, min_lr = 0.0 : f64, warmup_steps = 20 : i64, decay_steps = -1 : i64, style = "hf_linear"} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @lr_schedule_decay_negative(%s: tensor<i64>) {
  // expected-error @+1 {{'mt.lr_schedule' op expects 0 <= warmup_steps (0) <= decay_steps (-1)}}
  %0 = mt.lr_schedule %s {max_lr = 1.0e-03 : f64, min_lr = 0.0 : f64, warmup_steps = 0 : i64, decay_steps = -1 : i64, style = "cosine"} : (tensor<i64>) -> tensor<f32>
  return
}

// -----

func.func @sum_squares_replicas(%g: tensor<4xf32>) {
  // expected-error @+1 {{'mt.sum_squares' op expects replicas >= 1, got 0}}
  %0 = mt.sum_squares %g {replicas = 0 : i64} : (tensor<4xf32>) -> tensor<f32>
  return
}

// -----

func.func @sum_squares_flags(%g: tensor<4xf32>, %h: tensor<2xf32>) {
  // expected-error @+1 {{'mt.sum_squares' op expects one replicated flag per operand (2), got 1}}
  %0 = mt.sum_squares %g, %h {replicated = array<i1: true>} : (tensor<4xf32>, tensor<2xf32>) -> tensor<f32>
  return
}

// -----

func.func @sum_squares_stages(%g: tensor<4xf32>, %h: tensor<2xf32>) {
  // expected-error @+1 {{'mt.sum_squares' op expects one stage per operand (2), got 3}}
  %0 = mt.sum_squares %g, %h {stages = array<i64: 0, 1, 1>} : (tensor<4xf32>, tensor<2xf32>) -> tensor<f32>
  return
}

// -----

func.func @sum_squares_negative_stage(%g: tensor<4xf32>, %h: tensor<2xf32>) {
  // expected-error @+1 {{'mt.sum_squares' op expects non-negative stages, got -1}}
  %0 = mt.sum_squares %g, %h {stages = array<i64: 0, -1>} : (tensor<4xf32>, tensor<2xf32>) -> tensor<f32>
  return
}
