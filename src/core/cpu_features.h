// Run-time CPU feature detection, so one x86-64 binary picks AVX-512 / AVX512_BF16 paths only
// on machines that have them. SEQVIT_NO_AVX512=1 in the environment forces the portable path.
#pragma once

namespace seqvit {

bool cpu_has_avx512();       // AVX512F + AVX512BW + AVX512VL + AVX512DQ, OS-enabled
bool cpu_has_avx512_bf16();  // the above plus AVX512_BF16

}  // namespace seqvit
