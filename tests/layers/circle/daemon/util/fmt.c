/* fixture: util/ including engine/ is against the layer order */
#include "../engine/deletion.h"
