#include "consumer.h"
#include "consent.h"
/* generated, not under daemon/: ignored */
#include "vault/v1/vault.pb-c.h"
