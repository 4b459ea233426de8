#include "consent.h"
#include "deletion.h"
#include "../util/log.h"
