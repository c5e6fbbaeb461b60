// Host emulation (scripts/cuda_emulation): the one cuBLAS type that backend/cuda/check.h names.
#pragma once
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1 } cublasStatus_t;
