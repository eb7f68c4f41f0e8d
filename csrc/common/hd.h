// DMD_HD marks functions compiled for both host and device: shared math of the CPU and CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define DMD_HD __host__ __device__ __forceinline__
#else
#define DMD_HD inline
#endif
