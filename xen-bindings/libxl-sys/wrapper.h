/* What hx binds from Debian's libxen-dev. libxl_json.h is left out on purpose (it needs yajl). */
#define LIBXL_API_VERSION 0x041400
#include <libxl.h>
#include <libxl_utils.h>
#include <xentoollog.h>
#include <xenstore.h>
