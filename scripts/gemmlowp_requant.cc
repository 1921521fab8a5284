// Requantize int32 accumulators with gemmlowp's fixed-point primitives (fixedpoint/fixedpoint.h), as TFLite's
// default MultiplyByQuantizedMultiplier composes them. Reads "acc sx sw sy zp" lines (scales as float32 hex
// bits), writes one int per line. Built and run by scripts/record-gemmlowp-vectors.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>

#include "fixedpoint/fixedpoint.h"

static float from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// TFLite's QuantizeMultiplier: real = q * 2^(shift - 31), q rounded half away from zero (std::round).
static void quantize_multiplier(double real, std::int32_t* q, int* shift) {
  if (real == 0.0) { *q = 0; *shift = 0; return; }
  const double fraction = std::frexp(real, shift);
  std::int64_t q_fixed = static_cast<std::int64_t>(std::round(fraction * (1LL << 31)));
  if (q_fixed == (1LL << 31)) { q_fixed /= 2; ++*shift; }
  if (*shift < -31) { *shift = 0; q_fixed = 0; }
  *q = static_cast<std::int32_t>(q_fixed);
}

int main() {
  long long acc;
  unsigned sx_bits, sw_bits, sy_bits;
  int zp;
  while (std::scanf("%lld %x %x %x %d", &acc, &sx_bits, &sw_bits, &sy_bits, &zp) == 5) {
    const float sx = from_bits(sx_bits), sw = from_bits(sw_bits), sy = from_bits(sy_bits);
    const double real = static_cast<double>(sx * sw) / static_cast<double>(sy);
    std::int32_t q;
    int shift;
    quantize_multiplier(real, &q, &shift);
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const std::int32_t x = static_cast<std::int32_t>(static_cast<std::uint32_t>(acc) << left);
    std::int32_t y = gemmlowp::RoundingDivideByPOT(gemmlowp::SaturatingRoundingDoublingHighMul(x, q), right);
    long long out = static_cast<long long>(y) + zp;
    out = std::min(127LL, std::max(-128LL, out));
    std::printf("%lld\n", out);
  }
  return 0;
}
