#include "consumer.h"
#include "store.h"
#include "../util/log.h"
