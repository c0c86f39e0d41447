/* kgen CUDA CPU shim: stands in for the CUDA header of this name (see kgen_cuda_shim.h). */
#include "kgen_cuda_shim.h"
