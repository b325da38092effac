// CPU reference kernels of RMSNorm and LayerNorm over the last axis.
// Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_NORM_H
#define MT_RUNTIME_CPU_NORM_H

#include <cstdint>

namespace mt::cpu {

/// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w; x, y [rows, dim].
void rmsnormForward(const float *x, const float *w, float *y, int64_t rows,
                    int64_t dim, float eps);
/// dx += d/dx, dw += d/dw of sum(dy * y).
void rmsnormBackward(const float *x, const float *w, const float *dy, float *dx,
                     float *dw, int64_t rows, int64_t dim, float eps);

/// The fused residual add + RMSNorm (mt.add_rmsnorm): sum = x + residual,
/// y = rmsnorm(sum); every array [rows, dim] but w [dim]. The same fp32
/// operations as an add followed by rmsnormForward (bit-identical).
void addRmsnormForward(const float *x, const float *residual, const float *w,
                       float *sum, float *y, int64_t rows, int64_t dim, float eps);
/// Its backward (mt.add_rmsnorm_grad): dx += dresidual + d/dx sum(dy * y)
/// of rmsnorm(x), dw += d/dw; bit-identical to rmsnormBackward into a zeroed
/// buffer followed by the add of dresidual when dx starts at zero.
void addRmsnormBackward(const float *x, const float *w, const float *dy,
                        const float *dresidual, float *dx, float *dw, int64_t rows,
                        int64_t dim, float eps);

/// y = (x - mean) / sqrt(var + eps) * w + b (biased variance, as PyTorch).
void layernormForward(const float *x, const float *w, const float *b, float *y,
                      int64_t rows, int64_t dim, float eps);
void layernormBackward(const float *x, const float *w, const float *dy,
                       float *dx, float *dw, float *db, int64_t rows,
                       int64_t dim, float eps);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_NORM_H
