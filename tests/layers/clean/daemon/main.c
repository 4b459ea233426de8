/* fixture: DIR itself sits above every layer */
#include "engine/consumer.h"
#include "util/log.h"
