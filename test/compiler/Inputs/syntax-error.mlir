// A model with a misspelled op.
module {
func.func @forward(%x: tensor<1x8x64xf32>, %w: tensor<96x64xf32>) {
  // the next op does not exist
  %0 = mt.linearr %x, %w : (tensor<1x8x64xf32>, tensor<96x64xf32>) -> tensor<1x8x96xf32>
  return
}
}
