#include "deletion.h"
#include "consumer.h"
#include "../util/log.h"
