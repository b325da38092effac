// The compiler may use runtime/plan and runtime/support only.
#include "runtime/plan/PipelineSchedule.h"
#include "runtime/support/Status.h"
#  include <runtime/io/Safetensors.h>
