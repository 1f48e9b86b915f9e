/* libmtl — multi-task learning in C. Umbrella header: include this one. */
#ifndef MTL_MTL_H
#define MTL_MTL_H

#include "mtl/version.h"
#include "mtl/status.h"
#include "mtl/tensor.h"
#include "mtl/data.h"
#include "mtl/datasets.h"
#include "mtl/metrics.h"
#include "mtl/runtime.h"
#include "mtl/model.h"
#include "mtl/optim.h"
#include "mtl/weighting.h"
#include "mtl/dataset.h"
#include "mtl/train.h"
#include "mtl/io.h"
#include "mtl/config.h"

#endif
