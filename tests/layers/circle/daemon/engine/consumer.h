/* fixture: includes only system headers */
#include <stddef.h>
