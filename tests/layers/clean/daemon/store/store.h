#include "../util/log.h"
