// RUN: mtc-opt %s -split-input-file -mt-fuse | FileCheck %s

// Under the distributed optimizer the packed weights must lie back to back
// in their bucket too: mt-build-optimizer lays a layer's parameters out in
// reverse (up before gate), so mt-fuse moves the pair, in the fused
// weight's order, to where its earliest member was; the other members keep
// their order, the offsets follow, and the bucket's arguments name its new
// first member.
// CHECK-LABEL: func.func @mlp
// CHECK: mt.concat_rows
// CHECK: mt.chunked_swiglu
// CHECK-LABEL: func.func @optimizer_step
// CHECK-SAME: {mt.bucket = 0 : i64, mt.param = @gate_w, mt.role = "grad"}
// CHECK-SAME: mt.buckets = [{axis = "dp", offsets = array<i64: 0, 8192, 16384>, params = [@gate_w, @up_w, @norm]}]
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @norm : tensor<64xf32> init(ones)
func.func @mlp(%x: tensor<2x4x64xf32>) -> tensor<2x4x128xf32> {
  %wg = mt.weight @gate_w {mt.layer = 0 : i64} : tensor<128x64xf32>
  %g = mt.linear %x, %wg {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %wu = mt.weight @up_w {mt.layer = 0 : i64} : tensor<128x64xf32>
  %u = mt.linear %x, %wu {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u {mt.layer = 0 : i64} : tensor<2x4x128xf32>
  return %a : tensor<2x4x128xf32>
}
func.func @optimizer_step(%step: tensor<i64>, %g0: tensor<16448xf32> {mt.bucket = 0 : i64, mt.param = @up_w, mt.role = "grad"})
    attributes {mt.buckets = [{axis = "dp", offsets = array<i64: 0, 8192, 16384>, params = [@up_w, @gate_w, @norm]}]} {
  return
}

// -----

// A pair its buckets part stays two linears, and the buckets as they were.
// CHECK-LABEL: func.func @mlp
// CHECK-NOT: mt.concat_rows
// CHECK: mt.swiglu
// CHECK-LABEL: func.func @optimizer_step
// CHECK-SAME: mt.buckets = [{axis = "dp", offsets = array<i64: 0>, params = [@up_w]}, {axis = "dp", offsets = array<i64: 0>, params = [@gate_w]}]
mt.param @gate_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<128x64xf32> init(normal, std = 2.0e-02)
func.func @mlp(%x: tensor<2x4x64xf32>) -> tensor<2x4x128xf32> {
  %wg = mt.weight @gate_w {mt.layer = 0 : i64} : tensor<128x64xf32>
  %g = mt.linear %x, %wg {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %wu = mt.weight @up_w {mt.layer = 0 : i64} : tensor<128x64xf32>
  %u = mt.linear %x, %wu {mt.layer = 0 : i64} : (tensor<2x4x64xf32>, tensor<128x64xf32>) -> tensor<2x4x128xf32>
  %a = mt.swiglu %g, %u {mt.layer = 0 : i64} : tensor<2x4x128xf32>
  return %a : tensor<2x4x128xf32>
}
func.func @optimizer_step(%step: tensor<i64>, %g0: tensor<8192xf32> {mt.bucket = 0 : i64, mt.param = @up_w, mt.role = "grad"},
                          %g1: tensor<8192xf32> {mt.bucket = 1 : i64, mt.param = @gate_w, mt.role = "grad"})
    attributes {mt.buckets = [{axis = "dp", offsets = array<i64: 0>, params = [@up_w]}, {axis = "dp", offsets = array<i64: 0>, params = [@gate_w]}]} {
  return
}

// -----

// A gate whose size is no multiple of the members' 16-element alignment
// would leave padding before the up projection: not fused.
// CHECK-LABEL: func.func @mlp
// CHECK-NOT: mt.concat_rows
// CHECK-LABEL: func.func @optimizer_step
// CHECK-SAME: params = [@up_w, @gate_w]
mt.param @gate_w : tensor<3x5xf32> init(normal, std = 2.0e-02)
mt.param @up_w : tensor<3x5xf32> init(normal, std = 2.0e-02)
func.func @mlp(%x: tensor<2x4x5xf32>) -> tensor<2x4x3xf32> {
  %wg = mt.weight @gate_w {mt.layer = 0 : i64} : tensor<3x5xf32>
  %g = mt.linear %x, %wg {mt.layer = 0 : i64} : (tensor<2x4x5xf32>, tensor<3x5xf32>) -> tensor<2x4x3xf32>
  %wu = mt.weight @up_w {mt.layer = 0 : i64} : tensor<3x5xf32>
  %u = mt.linear %x, %wu {mt.layer = 0 : i64} : (tensor<2x4x5xf32>, tensor<3x5xf32>) -> tensor<2x4x3xf32>
  %a = mt.swiglu %g, %u {mt.layer = 0 : i64} : tensor<2x4x3xf32>
  return %a : tensor<2x4x3xf32>
}
func.func @optimizer_step(%step: tensor<i64>, %g0: tensor<64xf32> {mt.bucket = 0 : i64, mt.param = @up_w, mt.role = "grad"})
    attributes {mt.buckets = [{axis = "dp", offsets = array<i64: 0, 16>, params = [@up_w, @gate_w]}]} {
  return
}
