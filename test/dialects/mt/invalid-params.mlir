// RUN: mtc-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{'mt.param' op expects 'std' with init(normal)}}
mt.param @w : tensor<4x4xf32> init(normal)

// -----

// expected-error @+1 {{'mt.param' op expects std > 0, got -1.000000e+00}}
mt.param @w : tensor<4x4xf32> init(normal, std = -1.0)

// -----

// expected-error @+1 {{'mt.param' op expects no 'std' with init(ones)}}
mt.param @w : tensor<4xf32> init(ones, std = 0.02)

// -----

// expected-error @+1 {{'mt.param' op expects a non-empty shape, got [0, 4]}}
mt.param @w : tensor<0x4xf32> init(zeros)

// -----

// expected-error @+1 {{'mt.param' op has '*' in its name but no 'grouped_experts'}}
mt.param @"mlp.experts.*.w1.weight" : tensor<8x4x4xf32> init(zeros)

// -----

// expected-error @+1 {{'mt.param' op is 'grouped_experts' but its name has no '*' component}}
mt.param @"mlp.experts.w1.weight" : tensor<8x4x4xf32> init(zeros) {grouped_experts}

// -----

// expected-error @+1 {{'mt.param' op expects a grouped expert weight of rank >= 2 ([experts, ...]), got [8]}}
mt.param @"mlp.experts.*.w1.weight" : tensor<8xf32> init(zeros) {grouped_experts}

// -----

// expected-error @+1 {{'mt.param' op attribute 'type' failed to satisfy constraint}}
mt.param @w : tensor<4xi32> init(zeros)

// -----

func.func @missing() -> tensor<4xf32> {
  // expected-error @+1 {{'mt.weight' op refers to @nope, which is not an 'mt.param'}}
  %0 = mt.weight @nope : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

mt.param @w : tensor<4xf32> init(ones)
func.func @mismatch() -> tensor<8xf32> {
  // expected-error @+1 {{'mt.weight' op expects type 'tensor<4xf32>' of parameter @w, got 'tensor<8xf32>'}}
  %0 = mt.weight @w : tensor<8xf32>
  return %0 : tensor<8xf32>
}

// -----

func.func @bad_layer(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{expects 'mt.layer' to be a non-negative integer, got -1 : i64}}
  %0 = mt.add %x, %x {mt.layer = -1 : i64} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @bad_virtual_stage(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{expects 'mt.virtual_stage' to be a non-negative integer, got "one"}}
  %0 = mt.add %x, %x {mt.virtual_stage = "one"} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @bad_transfer(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'mt.stage_transfer' op expects adjacent virtual stages (to = from + 1 or from - 1, both >= 0), got from 0 and to 2}}
  %0 = mt.stage_transfer %x {from = 0 : i64, to = 2 : i64} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @unknown_attr(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{unknown attribute 'mt.stage' of the mt dialect (known: 'mt.layer', 'mt.backward', 'mt.recompute', 'mt.hf_config', 'mt.axes', 'mt.buckets', 'mt.virtual_stage', 'mt.pipeline_stage', 'mt.tied_stage')}}
  %0 = mt.add %x, %x {mt.stage = 1 : i64} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// Only an all-gather can be deferred (overlap_param_gather): `deferred` is
// its own attribute (ODS), not one of the dialect's.
func.func @deferred_add(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{unknown attribute 'mt.deferred' of the mt dialect}}
  %0 = mt.add %x, %x {mt.deferred} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// expected-error @+1 {{expects 'mt.hf_config' to be a string on a module}}
module attributes {mt.hf_config = 3 : i64} {
}

// -----

// expected-error @+1 {{'mt.param' op expects 1 <= hf_rows <= 96, got -1}}
mt.param @model.embed_tokens.weight : tensor<96x64xf32> init(normal, std = 2.0e-02) {hf_rows = -1 : i64}

// -----

// expected-error @+1 {{'mt.param' op expects 1 <= hf_rows <= 96, got 97}}
mt.param @model.embed_tokens.weight : tensor<96x64xf32> init(normal, std = 2.0e-02) {hf_rows = 97 : i64}
