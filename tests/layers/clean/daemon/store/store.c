#include "store.h"
#include "util/log.h"
